"""Dataset registry. A dataset knows its classes, dimensionality, frozen splits, how to fetch its raw files
(``download``) and how to turn them into the prepared layout (``preprocess``):

    resources/prepared/{dataset}/cases/{case}.h5   image (float32), label (uint8), geometry attributes
    resources/prepared/{dataset}/cases.csv         case, patient, split, labelled_{n} per budget, shape, spacing
    resources/prepared/{dataset}/dataset.json      classes, tail classes, dims, modality, intensity handling

For 2D-slice datasets (``dims == 2``) the training split is stored as single slices (as the SSL4MIS release is)
and validation/test as volumes, so inference and metrics always see whole volumes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from sslseg import SslsegError
from sslseg.registry import Registry

__all__ = ["DatasetSpec", "DATASETS", "read_split"]

SPLIT_DIR = Path(__file__).parent / "splits"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    classes: dict[int, str]  # foreground classes only; 0 is background
    tail: tuple[int, ...]  # the small "tail" structures, averaged separately in summaries
    dims: int  # 2: slice-wise training and inference; 3: patches
    modality: str
    intensity: str  # how preprocessing normalises intensities (recorded in dataset.json)
    budget_unit: str  # what a label budget counts
    download: Callable[..., dict | None]  # (source, raw_dir, sha256=None) -> facts for download.json
    preprocess: Callable[["DatasetSpec", Path, Path], None]  # (spec, raw_dir, out_dir)
    budgets: tuple[int, ...] = field(default=())  # budgets with a frozen labelled list
    mirror: bool = True  # 3D flips/rot90 allowed; False where left/right organs must stay apart

    @property
    def n_classes(self) -> int:
        return len(self.classes) + 1


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def read_split(dataset: str, name: str) -> list[str]:
    """The frozen split list ``splits/{dataset}/{name}.list`` shipped with the package (one id per line)."""
    path = SPLIT_DIR / dataset / f"{name}.list"
    if not path.is_file():
        raise SslsegError(f"{path}: split list is missing")
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(set(ids)) != len(ids):
        raise SslsegError(f"{path}: duplicate ids in split list")
    return ids


from sslseg.data import acdc, synthetic  # noqa: E402,F401  (register the datasets)
