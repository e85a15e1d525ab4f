"""LA, the Left Atrium set of the 2018 Atrial Segmentation Challenge (Xiong et al., MedIA 2021): 100 labelled
LGE-MRI volumes, in the preprocessed h5 release of UA-MT (Yu et al., MICCAI 2019) that UA-MT, DTC, MC-Net, SS-Net,
BCP and Hsu & Hua train and test on.

Source: the release's 100 ``<case>/mri_norm2.h5`` files -- by default fetched one by one from the UA-MT repository
(``URL``), or a local folder, a zip of it, or a ``file://`` URL of either (any folder depth: the folder holding the
case folders is found) -- every file checked against the SHA-256 list shipped in ``checksums/la_uamt_h5.sha256``
before anything replaces an earlier download. Each file holds ``image`` (float32, z-scored over the whole volume,
then cropped around the atrium with a random margin by UA-MT's ``la_heart_processing.py``: the files cannot be
regenerated bit for bit, hence the pinned copies) and ``label`` (uint8, 1 = atrium), both in (x, y, z) order; they
are stored here in array order (z, y, x). The release keeps no geometry; the challenge's volumes are 0.625 mm
isotropic, which is recorded as the spacing (distances in mm under ``strict``; the papers' protocol reports
voxels).

Split: UA-MT's ``test.list`` (20 volumes) is the test split. Its ``train.list`` (80) is split here into train (its
first 72) and val (its last 8), because the papers select their checkpoints on the test volumes and this pipeline
never does; a budget of n labelled volumes is the first n of ``train.list`` as in the papers (4, 8, 16: 5, 10,
20 %), so only the unlabelled pool is 8 volumes smaller than theirs (68 instead of 76 at 4 labelled).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np

from sslseg import SslsegError
from sslseg.data import DATASETS, SPLIT_DIR, DatasetInfo, DatasetSpec, read_split
from sslseg.data.download import fetch, incoming, sha256sum, unpack
from sslseg.data.prepare import write_cases, write_tables
from sslseg.io import Case, Geometry, check_case, replace_folder

__all__ = ["URL", "H5_SUMS", "SPACING", "release_files", "read_release_case"]

URL = "https://raw.githubusercontent.com/yulequan/UA-MT/master/data/2018LA_Seg_Training%20Set/{case}/mri_norm2.h5"
H5_SUMS = SPLIT_DIR.parent / "checksums" / "la_uamt_h5.sha256"
SPACING = (0.625, 0.625, 0.625)  # the challenge's isotropic resolution (mm)
CLASSES = {1: "LA"}


def release_files() -> dict[str, str]:
    """``<case>/mri_norm2.h5`` -> its pinned SHA-256."""
    out = {}
    for line in H5_SUMS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, _size, name = line.split(maxsplit=2)
            out[name] = digest
    return out


def _root(tree: Path, source: str, files: dict[str, str]) -> Path:
    """The folder at or under ``tree`` that holds the case folders."""
    first = next(iter(files))
    if (tree / first).is_file():
        return tree
    for p in sorted(tree.rglob(Path(first).name)):
        if p.parent.name == Path(first).parent.name:
            return p.parent.parent
    raise SslsegError(f"{source}: not the LA h5 release (no {first} in it)")


def _verify(root: Path, files: dict[str, str]) -> None:
    for name, digest in files.items():
        path = root / name
        if not path.is_file():
            raise SslsegError(f"{path}: missing from the LA h5 release")
        if (got := sha256sum(path)) != digest:
            raise SslsegError(f"{path}: sha256 mismatch (expected {digest}, got {got}); corrupt or modified file")


def download(source: str, raw: Path, sha256: str | None = None) -> dict:
    """Fetch the release into ``raw/h5``; nothing replaces an earlier download unless every file verified."""
    files = release_files()
    with incoming(raw) as work:
        if source:
            tree, digest = unpack(source, work, sha256)
            root = _root(tree, source, files)
        else:  # one request per file, each checked as it arrives
            digest, root = None, work / "tree"
            for name, sha in files.items():
                fetch(URL.format(case=Path(name).parent.name), root / name, sha)
        _verify(root, files)

        def fill(tmp: Path) -> None:
            for name in files:
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(root / name, tmp / name)

        replace_folder(raw / "h5", fill)
    return {"kind": "h5", "sha256": digest or f"per-file list {H5_SUMS.name}"}


def read_release_case(path: Path) -> Case:
    """One ``mri_norm2.h5`` as a Case in array order (z, y, x) with the challenge's spacing."""
    try:
        with h5py.File(path, "r") as f:
            image, label = f["image"][()], f["label"][()]
    except (OSError, KeyError) as e:
        raise SslsegError(f"{path}: unreadable LA h5 file ({e})") from None
    if image.ndim != 3 or image.shape != label.shape:
        raise SslsegError(f"{path}: image {image.shape} and label {label.shape} are not one 3D volume")
    case = Case(np.ascontiguousarray(image.transpose(2, 1, 0))[None].astype(np.float32),
                np.ascontiguousarray(label.transpose(2, 1, 0)), Geometry(SPACING))
    case = check_case(case, path, len(CLASSES) + 1)
    case.label = case.label.astype(np.uint8)
    return case


def preprocess(spec: DatasetSpec, raw: Path, out: Path) -> None:
    """Prepared cases from the verified release in ``raw/h5``; ``out/cases`` is replaced only when all passed."""
    root = raw / "h5"
    if not root.is_dir():
        raise SslsegError(f"{root}: no downloaded LA release; run download first")
    rows: list[dict] = []

    def cases():
        for split in ("train", "val", "test"):
            for cid in read_split("la", split):
                c = read_release_case(root / cid / "mri_norm2.h5")
                rows.append(dict(case=cid, patient=cid, split=split, shape=c.spatial_shape,
                                 spacing=c.geom.spacing_zyx))
                yield cid, c

    write_cases(out, cases())
    write_tables(spec, out, rows, {"source": "h5 (UA-MT)", "spacing_mm": list(SPACING)})


DATASETS.register("la")(DatasetSpec(DatasetInfo(
    "la", classes=CLASSES, dims=3, modality="LGE-MRI",
    intensity="z-score over the volume, cropped around the atrium (UA-MT release)",
    budget_unit="labelled volumes", budgets=(4, 8, 16)), download=download, preprocess=preprocess))
