"""LA, the Left Atrium set of the 2018 Atrial Segmentation Challenge (Xiong et al., MedIA 2021): 100 labelled
LGE-MRI volumes, as UA-MT (Yu et al., MICCAI 2019) prepared them for UA-MT, DTC, MC-Net, SS-Net, BCP and Hsu & Hua,
from either of two sources:

1. UA-MT's h5 release of the 100 ``<case>/mri_norm2.h5`` files -- the default, fetched one by one from the UA-MT
   repository (``URL``) -- or a local folder, a zip of it, or a ``file://`` URL of either (at any folder depth);
   every file is checked against the SHA-256 list shipped in ``checksums/la_uamt_h5.sha256`` before anything
   replaces an earlier download. Each file holds ``image`` (float32) and ``label`` (uint8, 1 = atrium) in (x, y, z)
   order, stored here in array order (z, y, x). The release keeps no geometry; the challenge's volumes are
   0.625 mm isotropic, which is recorded as the spacing.
2. The challenge's raw archive ``2018_UTAH_MICCAI.zip`` (SHA-256 pinned below; or an unpacked folder, not
   verifiable), ``<case>/lgemri.nrrd`` + ``laendo.nrrd`` (255 = atrium), read with SimpleITK with their geometry,
   and prepared as UA-MT's ``la_heart_processing.py`` does: z-score over the whole volume, then an in-plane crop
   (x and y; all slices kept) to the atrium's bounding box widened by half the shortfall to 112 voxels plus a
   margin. UA-MT draws that margin at random, 10-19 voxels per side (so its h5 files cannot be regenerated bit for
   bit); here it is ``MARGIN`` = 15 on every side. The crop's origin is moved with it, so the case keeps its place
   in space; it is scored on the crop, as the papers score it.

Split: UA-MT's ``test.list`` (20 volumes) is the test split. Its ``train.list`` (80) is split here into train (its
first 72) and val (its last 8), because the papers select their checkpoints on the test volumes and this pipeline
never does; a budget of n labelled volumes is the first n of ``train.list`` as in the papers (4, 8, 16: 5, 10,
20 %), so only the unlabelled pool is 8 volumes smaller than theirs (68 instead of 76 at 4 labelled).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from sslseg import SslsegError
from sslseg.data import DATASETS, SPLIT_DIR, DatasetInfo, DatasetSpec, read_split
from sslseg.data.download import fetch, incoming, listed_files, release_root, unpack, verify_files
from sslseg.data.prepare import write_cases, write_tables, xyz_release_case, zscore
from sslseg.io import Case, Geometry, check_case, read_label_of, read_nifti, replace_folder

__all__ = ["URL", "H5_SUMS", "SPACING", "RAW_SHA256", "MARGIN", "release_files", "read_release_case", "crop_box",
           "read_raw_case"]

URL = "https://raw.githubusercontent.com/yulequan/UA-MT/master/data/2018LA_Seg_Training%20Set/{case}/mri_norm2.h5"
RAW_SHA256 = "bee5ee5bd19a1caa1a375e147e56e7e691a4bc64e3873dc672d9d2b963a8f5e0"  # 2018_UTAH_MICCAI.zip
MARGIN = 15  # voxels around the atrium's in-plane box (UA-MT: random 10-19)
CROP_TO = 112  # UA-MT widens a box narrower than this (its patch's x/y) by half the shortfall on each side
H5_SUMS = SPLIT_DIR.parent / "checksums" / "la_uamt_h5.sha256"
SPACING = (0.625, 0.625, 0.625)  # the challenge's isotropic resolution (mm)
CLASSES = {1: "LA"}


def release_files() -> dict[str, str]:
    """``<case>/mri_norm2.h5`` -> its pinned SHA-256."""
    return listed_files(H5_SUMS)


def download(source: str, raw: Path, sha256: str | None = None) -> dict:
    """Fetch the h5 release (default) or the raw archive into ``raw/h5`` or ``raw/nrrd`` (the other kind's folder
    is removed, so preprocessing reads what was downloaded last); nothing replaces an earlier download unless the
    new one verified completely."""
    files = release_files()
    cases = [Path(name).parent.name for name in files]
    with incoming(raw) as work:
        if not source:  # one request per file, each checked as it arrives
            digest, tree = None, work / "tree"
            for name, sha in files.items():
                fetch(URL.format(case=Path(name).parent.name), tree / name, sha)
        else:
            tree, digest = unpack(source, work, sha256)
        if (root := release_root(tree, f"{cases[0]}/lgemri.nrrd")) is not None:
            if digest is not None and digest != (sha256 or RAW_SHA256).lower():
                raise SslsegError(f"{source}: sha256 mismatch (expected {sha256 or RAW_SHA256}, got {digest})")
            kind, names = "nrrd", [f"{c}/{f}" for c in cases for f in ("lgemri.nrrd", "laendo.nrrd")]
            if missing := [n for n in names if not (root / n).is_file()]:
                raise SslsegError(f"{root / missing[0]}: missing from the LA archive ({len(missing)} file(s) missing)")
            facts = {"kind": kind, "sha256": digest or "not verified (local folder)"}
        elif (root := release_root(tree, next(iter(files)))) is not None:
            verify_files(root, files, "LA h5 release")
            kind, names = "h5", list(files)
            facts = {"kind": kind, "sha256": digest or f"per-file list {H5_SUMS.name}"}
        else:
            raise SslsegError(f"{source}: neither the LA h5 release (<case>/mri_norm2.h5) nor the challenge archive "
                              "(<case>/lgemri.nrrd)")

        def fill(tmp: Path) -> None:
            for name in names:
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(root / name, tmp / name)

        replace_folder(raw / kind, fill)
        shutil.rmtree(raw / ("h5" if kind == "nrrd" else "nrrd"), ignore_errors=True)
    return facts


def read_release_case(path: Path) -> Case:
    """One ``mri_norm2.h5`` as a Case in array order (z, y, x) with the challenge's spacing."""
    return xyz_release_case(path, "LA", SPACING, len(CLASSES) + 1)


def crop_box(label_xyz: np.ndarray) -> tuple[slice, slice]:
    """UA-MT's in-plane crop of a (x, y, z) label: the atrium's x and y extent (max - min, as UA-MT measures it),
    widened on each side by half its shortfall to ``CROP_TO`` and by ``MARGIN``, clipped to the volume."""
    box = []
    for axis in (0, 1):
        idx = np.flatnonzero(label_xyz.any(axis=tuple(a for a in range(3) if a != axis)))
        lo, hi = int(idx[0]), int(idx[-1])
        pad = max(CROP_TO - (hi - lo), 0) // 2
        box.append(slice(max(lo - MARGIN - pad, 0), min(hi + MARGIN + pad, label_xyz.shape[axis])))
    return box[0], box[1]


def read_raw_case(folder: Path) -> Case:
    """``lgemri.nrrd`` + ``laendo.nrrd`` of one case as UA-MT prepares them: z-score over the whole volume, then the
    in-plane crop around the atrium (``crop_box``); array order (z, y, x), the crop's origin moved with it."""
    image, geom = read_nifti(folder / "lgemri.nrrd")
    label = read_label_of(folder / "laendo.nrrd", image, geom, folder / "lgemri.nrrd")
    if image.ndim != 3:
        raise SslsegError(f"{folder / 'lgemri.nrrd'}: {image.ndim}D; expected one 3D volume")
    if bad := sorted(set(np.unique(label).tolist()) - {0, 255}):
        raise SslsegError(f"{folder / 'laendo.nrrd'}: label values {bad[:5]}; expected 0 and 255")
    label = (label == 255).astype(np.uint8)
    if not label.any():
        raise SslsegError(f"{folder / 'laendo.nrrd'}: no atrium voxel; the crop needs one")
    image = zscore(image)
    bx, by = crop_box(label.transpose(2, 1, 0))
    direction = np.array(geom.direction or np.eye(3).ravel()).reshape(3, 3)
    shift = direction @ (np.array([bx.start, by.start, 0]) * np.array(geom.spacing))
    cropped = Geometry(geom.spacing, tuple(np.array(geom.origin or (0.0,) * 3) + shift), geom.direction)
    case = Case(np.ascontiguousarray(image[:, by, bx])[None], np.ascontiguousarray(label[:, by, bx]), cropped)
    return check_case(case, folder, len(CLASSES) + 1)


def preprocess(spec: DatasetSpec, raw: Path, out: Path) -> None:
    """Prepared cases from what ``download`` left in ``raw`` (``h5`` or ``nrrd``); ``out/cases`` is replaced only
    when every case passed its checks."""
    kind = next((k for k in ("h5", "nrrd") if (raw / k).is_dir()), None)
    if kind is None:
        raise SslsegError(f"{raw}: no downloaded LA (expected {raw / 'h5'} or {raw / 'nrrd'}); run download first")
    rows: list[dict] = []

    def cases():
        for split in ("train", "val", "test"):
            for cid in read_split("la", split):
                c = (read_release_case(raw / "h5" / cid / "mri_norm2.h5") if kind == "h5"
                     else read_raw_case(raw / "nrrd" / cid))
                rows.append(dict(case=cid, patient=cid, split=split, shape=c.spatial_shape,
                                 spacing=c.geom.spacing_zyx))
                yield cid, c

    write_cases(out, cases())
    extra = ({"source": "h5 (UA-MT)", "spacing_mm": list(SPACING)} if kind == "h5" else
             {"source": "nrrd (challenge archive)", "crop": f"in-plane atrium box widened to {CROP_TO}, margin "
                                                           f"{MARGIN} voxels", "intensity": "z-score over the volume"})
    write_tables(spec, out, rows, extra)


DATASETS.register("la")(DatasetSpec(DatasetInfo(
    "la", classes=CLASSES, dims=3, modality="LGE-MRI",
    intensity="z-score over the volume, cropped around the atrium (UA-MT release)",
    budget_unit="labelled volumes", budgets=(4, 8, 16)), download=download, preprocess=preprocess))
