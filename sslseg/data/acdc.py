"""ACDC (Bernard et al., IEEE TMI 2018) from either of two sources, both verified by checksum before use:

1. the official raw release (NIfTI zip, ``database/training/patientXXX/patientXXX_frameYY[_gt].nii.gz``; SHA-256
   pinned below), preprocessed as SSL4MIS ``acdc_data_processing.py`` does -- per-volume min-max to [0, 1], training
   volumes cut into 2D slices named ``{volume}_slice_{k}`` (k from 1, as in the SSL4MIS h5 release and its
   ``train_slices.list``), validation/test kept as 3D volumes -- but keeping the real spacing/origin/direction;
2. the SSL4MIS h5 release (``data/slices/*.h5`` + ``data/*.h5``) from a URL, a zip or a local directory; every
   file is checked against the SHA-256 list shipped in ``checksums/acdc_ssl4mis_h5.sha256``. That release stores no
   spacing, so its ``dataset.json`` says ``spacing_known: false`` and metrics are in voxels under either protocol.

Split: SSL4MIS's 70/10/20 patients (140/20/40 volumes); a budget of n labelled patients is the first
32/68/136/256 (n = 1/3/7/14) slices of ``train_slices.list`` (SSL4MIS/BCP ``patients_to_slices``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from sslseg import SslsegError
from sslseg.data import DATASETS, SPLIT_DIR, DatasetInfo, DatasetSpec, read_split
from sslseg.data.download import incoming, listed_files, unpack, verify_files
from sslseg.data.prepare import labelled_by_slices, minmax, volume_slices, write_cases, write_tables
from sslseg.io import Case, Geometry, check_case, read_label_of, read_nifti, read_release_h5, replace_folder

__all__ = ["RAW_URL", "RAW_SHA256", "BUDGET_SLICES"]

RAW_URL = ("https://humanheart-project.creatis.insa-lyon.fr/database/api/v1/collection/"
           "637218c173e9f0047faa00fb/download")
RAW_SHA256 = "2787e08b0d3525cbac710fc3bdf69ee7c5fd7446472e49db8bc78548802f6b5e"
H5_SUMS = SPLIT_DIR.parent / "checksums" / "acdc_ssl4mis_h5.sha256"
BUDGET_SLICES = {1: 32, 3: 68, 7: 136, 14: 256, 21: 396, 28: 512, 35: 664, 70: 1312}
CLASSES = {1: "RV", 2: "Myo", 3: "LV"}


def _find(root: Path, marker: str) -> Path | None:
    """The folder at or under ``root`` that contains the directory ``marker`` (e.g. ``data/slices``)."""
    if (root / marker).is_dir():
        return root
    for p in sorted(root.rglob(Path(marker).name)):
        if p.is_dir() and p.as_posix().endswith("/" + marker):
            return Path(p.as_posix()[: -len(marker) - 1])
    return None


def download(source: str, raw: Path, sha256: str | None = None) -> dict:
    """Fetch ``source`` (default: the official raw zip) into ``raw/h5`` or ``raw/nifti``; nothing replaces an
    earlier download unless the new one verified completely."""
    source = source or RAW_URL
    with incoming(raw) as work:
        return _install(source, raw, sha256, *unpack(source, work, sha256))


def _install(source: str, raw: Path, sha256: str | None, tree: Path, digest: str | None) -> dict:
    h5_root = _find(tree, "data/slices")
    nifti_root = _find(tree, "database/training")
    if nifti_root is not None:
        if digest is None:
            raise SslsegError(f"{source}: the raw NIfTI release is verified by the SHA-256 of its zip; pass the zip, "
                              "not an unpacked folder")
        expected = (sha256 or RAW_SHA256).lower()
        if digest != expected:
            raise SslsegError(f"{source}: sha256 mismatch (expected {expected}, got {digest})")
        kind, src_root, files = "nifti", nifti_root / "database", None
    elif h5_root is not None:
        files = listed_files(H5_SUMS)
        verify_files(h5_root, files, "SSL4MIS h5 release")
        kind, src_root = "h5", h5_root
    else:
        raise SslsegError(f"{source}: neither the raw ACDC layout (database/training/...) nor the SSL4MIS h5 layout "
                          "(data/slices/...)")

    def fill(tmp: Path) -> None:
        if files is None:
            shutil.copytree(src_root, tmp / "database")
        for name in files or ():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src_root / name, tmp / name)

    replace_folder(raw / kind, fill)
    return {"kind": kind, "sha256": digest or f"per-file list {H5_SUMS.name}"}


def _nifti_volume(root: Path, vol: str) -> Case:
    patient = vol.split("_")[0]
    folder = root / "database" / "training" / patient
    img_path, gt_path = folder / f"{vol}.nii.gz", folder / f"{vol}_gt.nii.gz"
    image, geom = read_nifti(img_path)
    label = read_label_of(gt_path, image, geom, img_path)
    case = check_case(Case(image[None].astype(np.float32), label, geom), gt_path, len(CLASSES) + 1)
    case.label = case.label.astype(np.uint8)
    case.image = minmax(case.image)
    return case


def _release_case(path: Path) -> Case:
    """One file of the SSL4MIS h5 release (``image`` min-max normalised, ``label``; no geometry, no channel axis)."""
    image, label = read_release_h5(path, "SSL4MIS")
    case = Case(image[None].astype(np.float32), label, Geometry((1.0,) * image.ndim))
    return check_case(case, path, len(CLASSES) + 1)


def preprocess(spec: DatasetSpec, raw: Path, out: Path) -> None:
    """Prepared cases from whichever source ``download`` left in ``raw``; written to a temporary folder that
    replaces ``out/cases`` only when every case passed its checks."""
    kind = "h5" if (raw / "h5").is_dir() else "nifti" if (raw / "nifti").is_dir() else None
    if kind is None:
        raise SslsegError(f"{raw}: no downloaded ACDC (expected {raw / 'h5'} or {raw / 'nifti'}); run download first")
    slices = read_split("acdc", "train_slices")
    rows: list[dict] = []
    cases = _h5_cases(raw / "h5" / "data", slices, rows) if kind == "h5" else _nifti_cases(raw / "nifti", slices, rows)
    write_cases(out, cases)
    labelled_by_slices(rows, slices, BUDGET_SLICES)
    info = spec.info.replace(spacing_known=kind == "nifti")
    write_tables(spec, out, rows, {"source": kind, "budget_slices": {str(k): v for k, v in BUDGET_SLICES.items()}},
                 info=info)


def _h5_cases(root: Path, slices: list[str], rows: list[dict]):
    for sid in slices:
        c = _release_case(root / "slices" / f"{sid}.h5")
        rows.append(dict(case=sid, patient=sid.split("_")[0], split="train", shape=c.spatial_shape, spacing=(1.0, 1.0)))
        yield sid, c
    for split in ("val", "test"):
        for vol in read_split("acdc", split):
            c = _release_case(root / f"{vol}.h5")
            rows.append(dict(case=vol, patient=vol.split("_")[0], split=split, shape=c.spatial_shape,
                             spacing=(1.0,) * 3))
            yield vol, c


def _nifti_cases(root: Path, slices: list[str], rows: list[dict]):
    wanted = set(slices)
    for vol in read_split("acdc", "train"):
        for sid, s in volume_slices(vol, _nifti_volume(root, vol)):
            if sid in wanted:
                rows.append(dict(case=sid, patient=vol.split("_")[0], split="train", shape=s.label.shape,
                                 spacing=s.geom.spacing_zyx))
                yield sid, s
    missing = wanted - {r["case"] for r in rows}
    if missing:
        raise SslsegError(f"{root}: train_slices.list names {len(missing)} slice(s) the volumes do not "
                          f"have, e.g. {sorted(missing)[0]}")
    order = {s: i for i, s in enumerate(slices)}
    rows.sort(key=lambda r: order[r["case"]])
    for split in ("val", "test"):
        for vol in read_split("acdc", split):
            c = _nifti_volume(root, vol)
            rows.append(dict(case=vol, patient=vol.split("_")[0], split=split, shape=c.spatial_shape,
                             spacing=c.geom.spacing_zyx))
            yield vol, c


DATASETS.register("acdc")(DatasetSpec(DatasetInfo(
    "acdc", classes=CLASSES, dims=2, modality="cine-MRI", intensity="per-volume min-max to [0, 1] (SSL4MIS)",
    budget_unit="labelled patients", budgets=tuple(BUDGET_SLICES)), download=download, preprocess=preprocess))
