"""Dataset registry. A dataset is a typed description (``DatasetInfo``) plus how to fetch its raw files
(``download``) and how to turn them into the prepared layout (``preprocess``):

    resources/prepared/{dataset}/cases/{case}.h5   image (channels, *spatial), label, geometry (see sslseg.io)
    resources/prepared/{dataset}/cases.csv         case, patient, split, labelled_{n} per budget, shape, spacing
    resources/prepared/{dataset}/dataset.json      the DatasetInfo, plus how this copy was prepared

A 2D dataset (``dims == 2``) trains on single slices and predicts slice by slice. Its training cases may be stored
as slices (as the SSL4MIS ACDC release is) or as volumes (every slice is a sample); validation and test cases are
whole volumes or single images, so inference and metrics always see what a paper scores.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Literal

from sslseg import SslsegError
from sslseg.registry import Registry

__all__ = ["DatasetInfo", "DatasetSpec", "DATASETS", "read_split", "prepared_info", "load_prepared", "split_cases"]

SPLIT_DIR = Path(__file__).parent / "splits"


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is: classes, channels, dimensionality, units, budgets. Written to dataset.json."""

    name: str
    classes: dict[int, str]  # foreground label ids -> names; 0 is background
    dims: Literal[2, 3]  # 2: slice-wise training and inference; 3: patches
    modality: str
    intensity: str  # how preprocessing normalises intensities
    budget_unit: str  # what a label budget counts, e.g. "labelled patients"
    budgets: tuple[int, ...] = ()  # budgets with a frozen labelled list
    tail: tuple[int, ...] = ()  # small "tail" structures (ids of ``groups``), averaged separately
    in_channels: int = 1
    channel_names: tuple[str, ...] = ()
    spacing_known: bool = True  # False: the source has no physical spacing; distances are in voxels
    mirror: bool = True  # 3D flips/rot90 allowed; False where left/right organs must stay apart
    # Scored structures. None: each class alone (exclusive labels). Otherwise overlapping regions, each the union
    # of label ids (BraTS-style whole tumour / tumour core), which evaluation scores instead of the classes.
    regions: dict[str, tuple[int, ...]] | None = None
    # How a prediction on a resampled grid returns to the original one: 1 per class linearly (nnU-Net), 0 nearest
    # neighbour as ``scipy.ndimage.zoom(order=0)`` maps it (corner pixels onto corner pixels: the call of
    # DuoMod-Net's test_amos.py and DEC-Seg's MyTest.py).
    restore_order: Literal[0, 1] = 1

    @property
    def n_classes(self) -> int:
        """Network outputs: the foreground classes plus background."""
        return len(self.classes) + 1

    @property
    def groups(self) -> dict[int, tuple[str, tuple[int, ...]]]:
        """What evaluation scores: id -> (name, label ids). Classes, or the regions numbered from 1."""
        if self.regions is None:
            return {c: (name, (c,)) for c, name in self.classes.items()}
        return {i + 1: (name, tuple(ids)) for i, (name, ids) in enumerate(self.regions.items())}

    def to_json(self) -> dict:
        """JSON form; regions become a list of [name, ids] pairs, so their order (their ids) survives."""
        d = asdict(self)
        d["classes"] = {str(k): v for k, v in self.classes.items()}
        if self.regions is not None:
            d["regions"] = [[name, list(ids)] for name, ids in self.regions.items()]
        return d

    @classmethod
    def from_json(cls, d: dict) -> "DatasetInfo":
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["classes"] = {int(k): v for k, v in sorted(d["classes"].items(), key=lambda kv: int(kv[0]))}
        for k in ("budgets", "tail", "channel_names"):
            d[k] = tuple(d.get(k, ()))
        if d.get("regions") is not None:
            d["regions"] = {name: tuple(ids) for name, ids in d["regions"]}
        return cls(**d)

    def replace(self, **changes) -> "DatasetInfo":
        return replace(self, **changes)


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: its description and its two stages. ``target_spacing`` (x, y, z mm) and ``crop``
    (``nonzero``: to the bounding box of non-zero image voxels, as nnU-Net) are applied by the shared NIfTI
    preprocessing (sslseg.data.prepare), resampling with ``resample``'s interpolation orders; ``normalise`` maps
    one raw channel to the network's input range."""

    info: DatasetInfo
    download: Callable[..., dict | None]  # (source, raw_dir, sha256=None) -> facts for download.json
    preprocess: Callable[["DatasetSpec", Path, Path], None]  # (spec, raw_dir, out_dir)
    normalise: Callable | None = None
    target_spacing: tuple[float, ...] | None = None
    crop: Literal["nonzero"] | None = None
    preparation: dict = field(default_factory=dict)  # what else dataset.json should record
    resample: tuple[int, int] = (3, 1)  # image spline order, label order (1 per-class linear, 0 nearest)
    case_columns: Callable[[str], dict] | None = None  # extra cases.csv columns of a case id (e.g. modality)
    label_map: dict[int, int] = field(default_factory=dict)  # raw label id -> prepared id (WORD: 16 -> 15)
    # 2D image datasets: images and masks stored at this (H, W), zoomed as DEC-Seg's loader does (scipy zoom, order
    # 0), the original mask kept for scoring on the original grid (ISIC's photographs are up to 6,700 px wide)
    image_size: tuple[int, int] | None = None

    @property
    def name(self) -> str:
        return self.info.name


# The dataset modules register themselves when first looked up (reading a prepared folder needs none of them).
DATASETS: Registry[DatasetSpec] = Registry("dataset", tuple(f"sslseg.data.{m}" for m in (
    "acdc", "amos", "brainmri", "flare22", "isic2018", "la", "pancreas", "pancreas_mcnet", "polyp", "promise12",
    "synthetic", "word")))


def read_split(dataset: str, name: str) -> list[str]:
    """The frozen split list ``splits/{dataset}/{name}.list`` shipped with the package (one id per line);
    ``labelled_{n}.list`` where a paper published its labelled subsets (else a budget is the first n of train)."""
    path = SPLIT_DIR / dataset / f"{name}.list"
    if not path.is_file():
        raise SslsegError(f"{path}: split list is missing")
    ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(set(ids)) != len(ids):
        raise SslsegError(f"{path}: duplicate ids in split list")
    return ids


def check_splits(dataset: str) -> None:
    """The frozen splits of ``dataset`` are disjoint: a case in two of them would leak test data into training or
    selection."""
    lists = {name: set(read_split(dataset, name)) for name in ("train", "val", "test")
             if (SPLIT_DIR / dataset / f"{name}.list").is_file()}
    names = list(lists)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if both := sorted(lists[a] & lists[b]):
                raise SslsegError(f"{SPLIT_DIR / dataset}: {len(both)} case(s) in both {a}.list and {b}.list "
                                  f"({', '.join(both[:3])})")


def prepared_info(prepared: Path) -> DatasetInfo:
    """The DatasetInfo of a prepared folder; a missing or outdated one raises SslsegError."""
    from sslseg.io import FORMAT

    prepared = Path(prepared)
    for name in ("dataset.json", "cases.csv"):
        if not (prepared / name).is_file():
            raise SslsegError(f"{prepared / name}: missing; run `sslseg preprocess` first")
    try:
        meta = json.loads((prepared / "dataset.json").read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise SslsegError(f"{prepared / 'dataset.json'}: prepared by an older sslseg (format "
                              f"{meta.get('format', 1)}, need {FORMAT}); rerun `sslseg preprocess`")
        return DatasetInfo.from_json(meta)
    except (ValueError, KeyError, TypeError) as e:
        raise SslsegError(f"{prepared / 'dataset.json'}: not a valid dataset description ({e})") from None


def load_prepared(prepared: Path):
    """(DatasetInfo, cases table as a DataFrame) of a prepared folder; a missing or outdated one raises
    SslsegError."""
    import pandas as pd

    info = prepared_info(prepared)
    return info, pd.read_csv(Path(prepared) / "cases.csv")


def split_cases(prepared: Path, split: str) -> list[str]:
    """The case ids of ``split`` in a prepared folder's cases.csv, in its order (no DataFrame: stages that need
    only the ids start without pandas)."""
    import csv

    with open(Path(prepared) / "cases.csv", newline="") as f:
        return [row["case"] for row in csv.DictReader(f) if row["split"] == split]

