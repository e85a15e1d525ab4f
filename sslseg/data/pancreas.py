"""Pancreas-NIH (TCIA Pancreas-CT, Roth et al. 2015) in the CoraNet convention (Shi et al., TMI 2021) that BCP and
Hsu & Hua train and test on: TCIA's 80 contrast-enhanced CT volumes (82 less the duplicates 25 and 70), from the
DICOM series and the label zip.

Source: a folder (or a ``file://`` URL of it, or a zip or tar of it) holding the NBIA download, ``PANCREAS_00XX``
folders of DICOM files at any depth (TCIA publishes no checksum for the series: recorded as not verified), and
TCIA's label archive ``TCIA_pancreas_labels-02-05-2017*.zip`` (SHA-256 pinned below) or its unpacked
``label00XX.nii.gz`` files. Every one of the 80 cases must be there before anything replaces an earlier download.

Preparation as CoraNet's ``preprocess/pancreas_preprocess.py`` (read in its repository):
* the slices stacked in the order of their DICOM instance numbers (CoraNet: sorted file names, which NBIA numbers
  the same way), HU through each file's rescale; the label array taken voxel for voxel on that stack, as CoraNet
  does (the label files' own headers are not used; their array must have the stack's shape);
* resampled to 1 mm isotropic (image linear, label nearest; the grid starts at the first voxel, as dipy's reslice
  that CoraNet calls; samples past the last slice take the volume's minimum). CoraNet passes the in-plane pixel
  size as the spacing of all three axes, so its z axis is scaled by the pixel size instead of the slice
  distance; here every axis uses its own spacing (a documented departure);
* HU clipped to [-125, 275] and min-max scaled to [0, 1];
* cropped to the pancreas box widened by 25 voxels on every side (within the volume), then to at least 96 voxels
  per axis (widened evenly, shifted to stay inside), zero-padded at the end where the volume is smaller; the
  crop's origin moves with it.

Split: CoraNet's lists (``data_lists/pancreas``): the 18 test volumes (0064-0082 less 0070); its 12 labelled
(0001-0012) and 50 unlabelled (0013-0063 less 0025) training volumes as train = the 12 + the first 44 unlabelled,
val = the last 6 (0058-0063), because CoraNet and BCP select on the test volumes and this pipeline never does. A
budget of n labelled volumes is the first n of ``train.list``: 12 = BCP's "20 %", 6 = "10 %".
"""

from __future__ import annotations

import locale
import os
import re
import shutil
from pathlib import Path

import numpy as np

from sslseg import SslsegError
from sslseg.data import DATASETS, DatasetInfo, DatasetSpec, read_split
from sslseg.data.download import extract, incoming, sha256sum, unpack
from sslseg.data.prepare import write_cases, write_tables
from sslseg.io import Case, Geometry, check_case, replace_folder

__all__ = ["LABELS_SHA256", "MARGIN", "MIN_CROP", "HU", "crop_box", "read_dicom_case"]

LABELS_SHA256 = "cf8a553c37c80e3840ce7392987b308f7a98cd5f50019511b2ac0f3a54b0934b"  # TCIA_pancreas_labels-02-05-2017-1
LABELS_ZIP = re.compile(r"TCIA_pancreas_labels.*\.zip$", re.IGNORECASE)
MARGIN = 25  # voxels around the pancreas box (CoraNet)
MIN_CROP = 96  # voxels per axis at least (CoraNet; the training patch)
HU = (-125.0, 275.0)
CLASSES = {1: "pancreas"}


def case_ids() -> list[str]:
    return [c for split in ("train", "val", "test") for c in read_split("pancreas", split)]


def _label_name(cid: str) -> str:
    return f"label{cid.rsplit('_', 1)[1]}.nii.gz"


def _walk(tree: Path):
    """(folder, its sub-folder names, its file names) under ``tree``, following linked folders."""
    for folder, dirs, files in os.walk(tree, followlinks=True):
        yield Path(folder), dirs, files


def download(source: str, raw: Path, sha256: str | None = None) -> dict:
    """The DICOM series of the 80 cases into ``raw/dicom/<case>`` and their labels into ``raw/labels``."""
    if not source:
        raise SslsegError("pancreas: the DICOM series come from TCIA's NBIA Data Retriever (manifest "
                          "Pancreas-CT-20200910.tcia), not a URL; set sources: {pancreas: <folder>} to a folder "
                          "with the download and TCIA_pancreas_labels-02-05-2017-1.zip")
    cases = case_ids()
    with incoming(raw) as work:
        tree, digest = unpack(source, work, sha256)
        found = list(_walk(tree))
        folders = {d.upper(): f / d for f, dirs, _ in found for d in dirs if d.upper().startswith("PANCREAS_")}
        has_dicom = {f for f, _, files in found if any(n.lower().endswith(".dcm") for n in files)}
        if missing := [c for c in cases if c not in folders
                       or not any(d == folders[c] or folders[c] in d.parents for d in has_dicom)]:
            raise SslsegError(f"{source}: no DICOM series for {missing[0]} ({len(missing)} of the 80 cases missing)")
        zips = sorted(f / n for f, _, files in found for n in files if LABELS_ZIP.search(n))
        if zips:
            if (got := sha256sum(zips[0])) != LABELS_SHA256:
                raise SslsegError(f"{zips[0]}: sha256 mismatch (expected {LABELS_SHA256}, got {got}); not TCIA's "
                                  "label archive")
            labels_tree, labels_facts = extract(zips[0], work / "labels", str(zips[0])), LABELS_SHA256
        else:
            labels_tree, labels_facts = tree, "not verified (unpacked label files)"
        labels = {n: f / n for f, _, files in _walk(labels_tree) for n in files
                  if re.fullmatch(r"label\d+\.nii\.gz", n)}
        if missing := [c for c in cases if _label_name(c) not in labels]:
            raise SslsegError(f"{source}: no {_label_name(missing[0])} (TCIA's label archive or its files; "
                              f"{len(missing)} label(s) missing)")

        def fill(tmp: Path) -> None:
            for c in cases:
                shutil.copytree(folders[c], tmp / "dicom" / c, symlinks=False)
                (tmp / "labels").mkdir(exist_ok=True)
                shutil.copyfile(labels[_label_name(c)], tmp / "labels" / _label_name(c))

        replace_folder(raw / "pancreas", fill)
    return {"kind": "dicom", "sha256": digest or "not verified (local folder)", "labels_sha256": labels_facts,
            "images": "not verified (TCIA publishes no checksum for the DICOM series)"}


def _stack(folder: Path):
    """The case's slices in instance-number order as one SimpleITK image (HU). GDCM sets the process's locale to
    "C" when it reads DICOM, which would make later text files ASCII-only: the locale is put back."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        return _read_stack(folder)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _read_stack(folder: Path):
    import SimpleITK as sitk

    files = sorted(f / n for f, _, names in _walk(folder) for n in names if n.lower().endswith(".dcm"))
    numbers, series = [], set()
    reader = sitk.ImageFileReader()
    for f in files:
        reader.SetFileName(str(f))
        try:
            reader.ReadImageInformation()
            numbers.append(int(reader.GetMetaData("0020|0013")))
            series.add(reader.GetMetaData("0020|000e") if reader.HasMetaDataKey("0020|000e") else "")
        except (RuntimeError, ValueError) as e:
            raise SslsegError(f"{f}: not a readable DICOM slice with an instance number "
                              f"({str(e).strip().splitlines()[-1][:120]})") from None
    if len(series) > 1:
        raise SslsegError(f"{folder}: {len(series)} DICOM series; expected one CT series per case")
    if len(set(numbers)) != len(numbers):
        raise SslsegError(f"{folder}: repeated DICOM instance numbers; cannot order the slices")
    order = [str(f) for _, f in sorted(zip(numbers, files))]
    try:
        return sitk.ReadImage(order, sitk.sitkFloat32)
    except RuntimeError as e:
        raise SslsegError(f"{folder}: the DICOM series could not be read ({str(e).strip().splitlines()[-1][:120]})") \
            from None


def crop_box(label: np.ndarray, margin: int = MARGIN, least: int = MIN_CROP) -> tuple[slice, ...]:
    """CoraNet's crop of a label volume: per axis the foreground's extent widened by ``margin`` (clipped to the
    volume), then, if narrower than ``least``, widened by half the shortfall on each side and shifted to stay in
    the volume (the whole axis if it is shorter)."""
    box = []
    for axis, n in enumerate(label.shape):
        idx = np.flatnonzero(label.any(axis=tuple(a for a in range(label.ndim) if a != axis)))
        lo, hi = max(int(idx[0]) - margin, 0), min(int(idx[-1]) + 1 + margin, n)
        if hi - lo < least:
            if least >= n:
                lo, hi = 0, n
            else:
                need = least - (hi - lo)
                lo, hi = lo - need // 2, hi + need - need // 2
                lo, hi = (0, hi - lo) if lo < 0 else (lo, hi)
                lo, hi = (lo - (hi - n), n) if hi > n else (lo, hi)
        box.append(slice(lo, hi))
    return tuple(box)


def read_dicom_case(folder: Path, label_path: Path) -> Case:
    """One case prepared as CoraNet (module docstring): (z, y, x) at 1 mm, [0, 1], cropped around the pancreas."""
    import SimpleITK as sitk

    from sslseg.io import read_nifti

    image = _stack(folder)
    label, _ = read_nifti(label_path)
    shape = sitk.GetArrayViewFromImage(image).shape
    if label.shape != shape:
        raise SslsegError(f"{label_path}: label array {label.shape} does not match the {shape[0]}-slice DICOM "
                          f"stack {shape} of {folder.name}")
    if bad := sorted(set(np.unique(label).tolist()) - {0, 1}):
        raise SslsegError(f"{label_path}: label values {bad[:5]}; expected 0 and 1")
    if not label.any():
        raise SslsegError(f"{label_path}: no pancreas voxel; the crop needs one")
    lab = sitk.GetImageFromArray(label.astype(np.uint8))
    lab.CopyInformation(image)
    size = [max(1, int(round(n * s))) for n, s in zip(image.GetSize(), image.GetSpacing())]
    floor = float(sitk.GetArrayViewFromImage(image).min())

    def to_1mm(img, interp, fill):
        return sitk.Resample(img, size, sitk.Transform(), interp, image.GetOrigin(), (1.0, 1.0, 1.0),
                             image.GetDirection(), fill)

    arr = sitk.GetArrayFromImage(to_1mm(image, sitk.sitkLinear, floor)).clip(*HU)
    arr = (arr - arr.min()) / max(float(arr.max() - arr.min()), 1e-8)
    lab_arr = sitk.GetArrayFromImage(to_1mm(lab, sitk.sitkNearestNeighbor, 0))
    if not lab_arr.any():
        raise SslsegError(f"{label_path}: the pancreas vanished when resampled to 1 mm")
    box = crop_box(lab_arr, MARGIN, MIN_CROP)
    pad = [(0, max(MIN_CROP - (b.stop - b.start), 0)) for b in box]
    arr, lab_arr = np.pad(arr[box], pad), np.pad(lab_arr[box], pad)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    origin = np.array(image.GetOrigin()) + direction @ np.array([b.start for b in box[::-1]], float)
    case = Case(arr[None].astype(np.float32), lab_arr.astype(np.uint8),
                Geometry((1.0, 1.0, 1.0), tuple(origin.tolist()), tuple(image.GetDirection())))
    return check_case(case, label_path, len(CLASSES) + 1)


def preprocess(spec: DatasetSpec, raw: Path, out: Path) -> None:
    """Prepared cases from ``raw/pancreas``; ``out/cases`` is replaced only when every case passed its checks."""
    src = raw / "pancreas"
    if not src.is_dir():
        raise SslsegError(f"{src}: no downloaded Pancreas-CT; run download first")
    rows: list[dict] = []

    def cases():
        for split in ("train", "val", "test"):
            for cid in read_split("pancreas", split):
                c = read_dicom_case(src / "dicom" / cid, src / "labels" / _label_name(cid))
                rows.append(dict(case=cid, patient=cid, split=split, shape=c.spatial_shape,
                                 spacing=c.geom.spacing_zyx))
                yield cid, c

    write_cases(out, cases())
    write_tables(spec, out, rows, {"source": "DICOM + TCIA labels (CoraNet preparation)", "spacing_mm": [1.0] * 3,
                                   "hu_window": list(HU), "crop": f"pancreas box + {MARGIN} voxels, at least "
                                                                  f"{MIN_CROP} per axis"})


DATASETS.register("pancreas")(DatasetSpec(DatasetInfo(
    "pancreas", classes=CLASSES, dims=3, modality="CT",
    intensity="HU clipped to [-125, 275], min-max to [0, 1], 1 mm, cropped around the pancreas (CoraNet)",
    budget_unit="labelled volumes", budgets=(6, 12)), download=download, preprocess=preprocess))
