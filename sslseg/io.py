"""File helpers: atomic writes, prepared cases (h5) and NIfTI with geometry.

Geometry is kept in SimpleITK's conventions (spacing/origin in x, y, z order, direction as a flat
row-major matrix); ``spacing_zyx`` is the spacing in array axis order, which metrics take.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from sslseg import SslsegError

__all__ = ["Case", "atomic_path", "write_json", "check_case", "read_case", "write_case", "read_nifti", "write_nifti"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or "".join(path.suffixes), dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@dataclass
class Case:
    """One prepared case: image (float32) and label (uint8) in array order, plus geometry."""

    image: np.ndarray
    label: np.ndarray | None
    spacing: tuple[float, ...]  # SimpleITK order (x, y, z)
    origin: tuple[float, ...] = ()
    direction: tuple[float, ...] = ()
    meta: dict = field(default_factory=dict)

    @property
    def spacing_zyx(self) -> tuple[float, ...]:
        return tuple(reversed(self.spacing))


def write_case(path: str | os.PathLike, case: Case) -> None:
    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("image", data=case.image.astype(np.float32), compression="gzip")
            if case.label is not None:
                f.create_dataset("label", data=case.label.astype(np.uint8), compression="gzip")
            f.attrs["spacing"] = np.asarray(case.spacing, float)
            f.attrs["origin"] = np.asarray(case.origin or [0.0] * len(case.spacing), float)
            ndim = len(case.spacing)
            f.attrs["direction"] = np.asarray(case.direction or np.eye(ndim).ravel(), float)
            for k, v in case.meta.items():
                f.attrs[k] = v


def check_case(case: Case, path: str | os.PathLike, n_classes: int | None = None) -> Case:
    """Image/label shapes agree, label values lie in 0..n_classes-1, the image is finite; else SslsegError."""
    if case.label is not None:
        if case.label.shape != case.image.shape:
            raise SslsegError(f"{path}: image shape {case.image.shape} and label shape {case.label.shape} differ")
        if n_classes is not None and case.label.size:
            values = np.unique(case.label)
            if values.min() < 0 or values.max() >= n_classes or not np.all(values == np.round(values)):
                bad = [v for v in values.tolist() if v not in range(n_classes)]
                raise SslsegError(f"{path}: label values {bad} outside 0..{n_classes - 1}")
    if not np.all(np.isfinite(case.image)):
        raise SslsegError(f"{path}: image contains NaN or inf")
    return case


def read_case(path: str | os.PathLike, labels: bool = True, n_classes: int | None = None) -> Case:
    """Read a prepared h5 case; any defect raises SslsegError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise SslsegError(f"{path}: prepared case file is missing")
    try:
        with h5py.File(path, "r") as f:
            image = f["image"][()]
            label = f["label"][()] if labels and "label" in f else None
            spacing = tuple(float(s) for s in f.attrs.get("spacing", [1.0] * image.ndim))
            origin = tuple(float(s) for s in f.attrs.get("origin", [0.0] * image.ndim))
            direction = tuple(float(s) for s in f.attrs.get("direction", np.eye(image.ndim).ravel()))
    except (OSError, KeyError, ValueError) as e:
        raise SslsegError(f"{path}: unreadable or corrupt h5 ({e})") from None
    if labels and label is None:
        raise SslsegError(f"{path}: h5 has no 'label' dataset")
    check_case(Case(image, label, spacing), path, n_classes)
    return Case(image.astype(np.float32), None if label is None else label.astype(np.uint8), spacing, origin, direction)


def _check_nifti_complete(path: Path) -> None:
    """SimpleITK reads truncated NIfTI files without complaint (missing voxels become 0), so check that the
    (decompressed) file holds the whole voxel block its header announces."""
    import gzip
    import struct

    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError) as e:
        raise SslsegError(f"{path}: malformed NIfTI (truncated or corrupt compression: {e})") from None
    for endian in "<>":
        if len(data) >= 348 and struct.unpack(endian + "i", data[:4])[0] == 348:  # NIfTI-1
            dim = struct.unpack(endian + "8h", data[40:56])
            bitpix = struct.unpack(endian + "h", data[72:74])[0]
            offset = int(struct.unpack(endian + "f", data[108:112])[0])
            break
        if len(data) >= 540 and struct.unpack(endian + "i", data[:4])[0] == 540:  # NIfTI-2
            dim = struct.unpack(endian + "8q", data[16:80])
            bitpix = struct.unpack(endian + "h", data[14:16])[0]
            offset = int(struct.unpack(endian + "q", data[168:176])[0])
            break
    else:
        raise SslsegError(f"{path}: malformed NIfTI (no NIfTI-1/2 header)")
    if not 1 <= dim[0] <= 7:
        raise SslsegError(f"{path}: malformed NIfTI (dim[0] = {dim[0]})")
    need = offset + int(np.prod([max(d, 1) for d in dim[1:dim[0] + 1]])) * bitpix // 8
    if len(data) < need:
        raise SslsegError(f"{path}: malformed NIfTI (truncated: {len(data)} bytes, header needs {need})")


def read_nifti(path: str | os.PathLike) -> Case:
    """Read a NIfTI image (label=None) with its geometry; a malformed or truncated file raises SslsegError."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise SslsegError(f"{path}: NIfTI file is missing")
    if path.name.endswith((".nii", ".nii.gz")):
        _check_nifti_complete(path)
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise SslsegError(f"{path}: malformed NIfTI ({first[-1] if first else 'unreadable'})") from None
    arr = sitk.GetArrayFromImage(img)
    return Case(arr, None, tuple(img.GetSpacing()), tuple(img.GetOrigin()), tuple(img.GetDirection()))


def write_nifti(path: str | os.PathLike, array: np.ndarray, like: Case) -> None:
    """Write ``array`` (array order) with the geometry of ``like``, atomically."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(array)
    img.SetSpacing(like.spacing)
    if like.origin:
        img.SetOrigin(like.origin)
    if like.direction:
        img.SetDirection(like.direction)
    with atomic_path(path, suffix=".nii.gz") as tmp:
        sitk.WriteImage(img, str(tmp), useCompression=True)
