"""File helpers: atomic writes, prepared cases (h5), NIfTI and 2D image files with geometry.

Geometry is kept in SimpleITK's conventions (spacing/origin in x, y, z order, direction as a flat row-major
matrix); ``Geometry.spacing_zyx`` is the spacing in array axis order, which metrics take.

A prepared case file (``cases/{case}.h5``, format 2) holds:
* ``image``: float32, (channels, *spatial) -- always with the channel axis; chunked, so patches read lazily;
* ``label``: uint8 (*spatial), absent for cases without labels;
* ``fg/{k}``: for 3D training cases, the flat (C-order) indices of the voxels of class k, so a sampler can centre a
  patch on a random voxel of a class without reading the label;
* ``label_orig``: the label on the original grid, when preprocessing resampled or cropped the case;
* attributes ``spacing``, ``origin``, ``direction`` (the prepared grid), and for resampled/cropped cases
  ``orig_shape``, ``orig_spacing``, ``orig_origin``, ``orig_direction``, ``box_start``, ``box_stop`` (the crop box
  in original array indices), which ``restore`` uses to write predictions back on the original grid.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Callable, Iterator

import h5py
import numpy as np

from sslseg import SslsegError

__all__ = ["Geometry", "Source", "Case", "FORMAT", "atomic_path", "replace_folder", "write_json", "check_case", "read_case",
           "write_case", "case_shape", "read_region", "read_fg_index", "read_release_h5", "read_nifti", "read_label_of",
           "write_nifti", "read_image_2d"]

FORMAT = 2  # prepared-case format; dataset.json records it


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or "".join(path.suffixes), dir=path.parent)
    os.close(fd)
    try:
        try:
            yield Path(tmp)
        except OSError as e:
            if e.filename is None:  # a failed write() names no file: name the one being written
                raise OSError(e.errno, e.strerror or str(e), str(path)) from None
            raise
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide results from the rest of a group
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def replace_folder(dest: str | os.PathLike, fill: Callable[[Path], None]) -> None:
    """Fill a fresh sibling folder ``.{name}.tmp`` by ``fill(tmp)`` and put it in ``dest``'s place only once
    ``fill`` has succeeded; on any failure the temporary folder is removed and ``dest`` stays as it was."""
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        fill(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def write_torch(path: str | os.PathLike, obj) -> None:
    """``torch.save`` of ``obj``, atomically and byte-reproducibly: saving to a file records the file's (here
    random temporary) name inside the archive, saving to a buffer does not."""
    import torch

    buf = BytesIO()
    torch.save(obj, buf)
    with atomic_path(path, suffix=".pt") as tmp:
        tmp.write_bytes(buf.getvalue())


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class Geometry:
    """Where an array sits in space, SimpleITK order (x, y, z)."""

    spacing: tuple[float, ...]
    origin: tuple[float, ...] = ()
    direction: tuple[float, ...] = ()

    @property
    def spacing_zyx(self) -> tuple[float, ...]:
        return tuple(reversed(self.spacing))

    def full(self) -> "Geometry":
        n = len(self.spacing)
        return Geometry(tuple(map(float, self.spacing)), tuple(map(float, self.origin or [0.0] * n)),
                        tuple(map(float, self.direction or np.eye(n).ravel())))

    def close_to(self, other: "Geometry", rtol: float = 1e-4, atol: float = 1e-3) -> bool:
        a, b = self.full(), other.full()
        return all(len(x) == len(y) and np.allclose(x, y, rtol=rtol, atol=atol)
                   for x, y in ((a.spacing, b.spacing), (a.origin, b.origin), (a.direction, b.direction)))


@dataclass(frozen=True)
class Source:
    """The original grid of a resampled or cropped case: geometry, array shape and the crop box in it."""

    geom: Geometry
    shape: tuple[int, ...]
    box: tuple[slice, ...]


@dataclass
class Case:
    """One case: image (float32, (channels, *spatial)), label (uint8, spatial) and geometry."""

    image: np.ndarray | None
    label: np.ndarray | None
    geom: Geometry
    source: Source | None = None  # set when preprocessing changed the grid
    label_orig: np.ndarray | None = None  # the label on the source grid
    fg: bool = False  # write per-class voxel indices (3D training cases)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.image.shape[1:]) if self.image is not None else tuple(self.label.shape)


def check_case(case: Case, path: str | os.PathLike, n_classes: int | None = None) -> Case:
    """Image/label shapes agree, label values lie in 0..n_classes-1, the image is finite; else SslsegError."""
    if case.image is not None and case.image.ndim < 2:
        raise SslsegError(f"{path}: image has {case.image.ndim} axes; expected (channels, *spatial)")
    if case.label is not None and case.image is not None and case.label.shape != case.image.shape[1:]:
        raise SslsegError(f"{path}: image shape {case.image.shape[1:]} and label shape {case.label.shape} differ")
    for lab in (case.label, case.label_orig):
        if lab is not None and n_classes is not None and lab.size:
            if np.issubdtype(lab.dtype, np.integer) and 0 <= lab.min() and lab.max() < n_classes:
                continue  # the common case, without sorting the volume
            values = np.unique(lab)
            if values.min() < 0 or values.max() >= n_classes or not np.all(values == np.round(values)):
                bad = [v for v in values.tolist() if v not in range(n_classes)]
                raise SslsegError(f"{path}: label values {bad} outside 0..{n_classes - 1}")
    if case.image is not None and not np.all(np.isfinite(case.image)):
        raise SslsegError(f"{path}: image contains NaN or inf")
    return case


def _chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Chunks of at most 32 x 64 x 64 voxels (whole slices in 2D), so 3D patches read only what they need."""
    if len(shape) < 3:
        return tuple(shape)
    return tuple(min(s, c) for s, c in zip(shape, (32, 64, 64)))


def write_case(path: str | os.PathLike, case: Case) -> None:
    """Write a prepared case atomically; a write failure (a full disk) raises SslsegError naming ``path``."""
    try:
        _write_case(path, case)
    except (OSError, RuntimeError) as e:
        reason = " ".join(str(getattr(e, "strerror", None) or e).split())
        raise SslsegError(f"{path}: could not be written ({reason})") from None


def _write_case(path: str | os.PathLike, case: Case) -> None:
    geom = case.geom.full()
    buf = BytesIO()  # built in memory and written with one plain write: HDF5 never meets a full disk
    with h5py.File(buf, "w") as f:
        img = np.asarray(case.image, np.float32)
        f.create_dataset("image", data=img, compression="gzip", chunks=(1,) + _chunks(img.shape[1:]))
        if case.label is not None:
            lab = np.asarray(case.label, np.uint8)
            f.create_dataset("label", data=lab, compression="gzip", chunks=_chunks(lab.shape))
            if case.fg:
                for k in np.unique(lab[lab != 0]):
                    idx = np.flatnonzero(lab == k)
                    f.create_dataset(f"fg/{int(k)}", data=idx.astype(np.int64), compression="gzip",
                                     shuffle=True)
        if case.label_orig is not None:
            f.create_dataset("label_orig", data=np.asarray(case.label_orig, np.uint8), compression="gzip")
        f.attrs["format"] = FORMAT
        f.attrs["spacing"], f.attrs["origin"], f.attrs["direction"] = geom.spacing, geom.origin, geom.direction
        if case.source is not None:
            src = case.source.geom.full()
            f.attrs["orig_spacing"], f.attrs["orig_origin"] = src.spacing, src.origin
            f.attrs["orig_direction"], f.attrs["orig_shape"] = src.direction, case.source.shape
            f.attrs["box_start"] = [s.start for s in case.source.box]
            f.attrs["box_stop"] = [s.stop for s in case.source.box]
    with atomic_path(path, suffix=".h5") as tmp:
        tmp.write_bytes(buf.getvalue())


def _open(path: Path) -> h5py.File:
    if not path.is_file():
        raise SslsegError(f"{path}: prepared case file is missing")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise SslsegError(f"{path}: unreadable or corrupt h5 ({e})") from None
    fmt = int(f.attrs.get("format", 1))
    if fmt != FORMAT:
        f.close()
        raise SslsegError(f"{path}: prepared by an older sslseg (format {fmt}, need {FORMAT}); delete the prepared "
                          "folder and rerun `sslseg preprocess`")
    return f


def _geom(attrs, prefix: str = "") -> Geometry:
    return Geometry(*(tuple(float(v) for v in attrs[prefix + k]) for k in ("spacing", "origin", "direction")))


def read_case(path: str | os.PathLike, image: bool = True, label: bool = True, original: bool = False,
              n_classes: int | None = None) -> Case:
    """Read a prepared case (whole arrays); ``original`` also reads ``label_orig`` (the label on the source grid;
    the label itself when the grid is unchanged). Any defect raises SslsegError naming the file."""
    path = Path(path)
    f = _open(path)
    try:
        with f:
            img = f["image"][()] if image else None
            if label and "label" not in f:
                raise SslsegError(f"{path}: h5 has no 'label' dataset")
            lab = f["label"][()] if label else None
            orig = f["label_orig"][()] if original and "label_orig" in f else None
            source = None
            if "orig_shape" in f.attrs:
                box = tuple(slice(int(a), int(b)) for a, b in zip(f.attrs["box_start"], f.attrs["box_stop"]))
                source = Source(_geom(f.attrs, "orig_"), tuple(int(s) for s in f.attrs["orig_shape"]), box)
            geom = _geom(f.attrs)
    except (OSError, KeyError, ValueError) as e:
        raise SslsegError(f"{path}: unreadable or corrupt h5 ({e})") from None
    case = Case(None if img is None else img.astype(np.float32, copy=False), lab, geom, source, orig)
    if original and orig is None and lab is not None:
        case.label_orig = lab
    return check_case(case, path, n_classes)


def case_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """(channels, *spatial) of a prepared case, read from its header only."""
    with _open(Path(path)) as f:
        return tuple(int(s) for s in f["image"].shape)


def read_release_h5(path: str | os.PathLike, release: str) -> tuple[np.ndarray, np.ndarray]:
    """(image, label) of one file of a published h5 release (SSL4MIS's ACDC, UA-MT's LA); an unreadable file or a
    missing key raises SslsegError naming the file and the ``release``."""
    try:
        with h5py.File(path, "r") as f:
            return f["image"][()], f["label"][()]
    except (OSError, KeyError) as e:
        raise SslsegError(f"{path}: unreadable {release} h5 file ({e})") from None


def read_region(path: str | os.PathLike, key: str, region: tuple[slice, ...]) -> np.ndarray:
    """``image`` (channels first; ``region`` spatial) or ``label`` values inside ``region``, read lazily."""
    path = Path(path)
    try:
        with _open(path) as f:
            return f[key][(slice(None),) + region if key == "image" else region]
    except (OSError, KeyError, ValueError) as e:
        raise SslsegError(f"{path}: unreadable or corrupt h5 ({e})") from None


def read_fg_index(path: str | os.PathLike) -> dict[int, int]:
    """Voxel count per foreground class present in a 3D training case (from its ``fg`` index)."""
    with _open(Path(path)) as f:
        return {int(k): int(f["fg"][k].shape[0]) for k in sorted(f.get("fg", {}), key=int)}


def fg_voxel(path: str | os.PathLike, cls: int, j: int, shape: tuple[int, ...]) -> np.ndarray:
    """The coordinates of the j-th voxel (C order) of class ``cls``."""
    with _open(Path(path)) as f:
        return np.asarray(np.unravel_index(int(f["fg"][str(cls)][j]), shape))


def _check_nifti_complete(path: Path) -> None:
    """SimpleITK reads truncated NIfTI files without complaint (missing voxels become 0), so check that the
    (decompressed) file holds the whole voxel block its header announces; and it hands back 0 for NaN and inf
    voxels, so check float voxel blocks for them here."""
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
            dtype, bitpix = struct.unpack(endian + "2h", data[70:74])
            offset = int(struct.unpack(endian + "f", data[108:112])[0])
            break
        if len(data) >= 540 and struct.unpack(endian + "i", data[:4])[0] == 540:  # NIfTI-2
            dim = struct.unpack(endian + "8q", data[16:80])
            dtype, bitpix = struct.unpack(endian + "2h", data[12:16])
            offset = int(struct.unpack(endian + "q", data[168:176])[0])
            break
    else:
        raise SslsegError(f"{path}: malformed NIfTI (no NIfTI-1/2 header)")
    if not 1 <= dim[0] <= 7:
        raise SslsegError(f"{path}: malformed NIfTI (dim[0] = {dim[0]})")
    count = int(np.prod([max(d, 1) for d in dim[1:dim[0] + 1]]))
    need = offset + count * bitpix // 8
    if len(data) < need:
        raise SslsegError(f"{path}: malformed NIfTI (truncated: {len(data)} bytes, header needs {need})")
    floats = {16: "f4", 64: "f8"}  # NIfTI datatype codes of float32 / float64
    if dtype in floats and not np.isfinite(np.frombuffer(data, endian + floats[dtype], count, offset)).all():
        raise SslsegError(f"{path}: image contains NaN or inf voxels")


def _read_sitk(path: Path):
    import SimpleITK as sitk

    if not path.is_file():
        raise SslsegError(f"{path}: file is missing")
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise SslsegError(f"{path}: unreadable image ({first[-1] if first else 'unknown error'})") from None


def read_nifti(path: str | os.PathLike) -> tuple[np.ndarray, Geometry]:
    """A NIfTI (or other SimpleITK-readable, e.g. MetaImage) image in array order with its geometry; a missing,
    malformed or truncated file raises SslsegError."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise SslsegError(f"{path}: image file is missing")
    if path.name.endswith((".nii", ".nii.gz")):
        _check_nifti_complete(path)
    img = _read_sitk(path)
    return sitk.GetArrayFromImage(img), Geometry(tuple(img.GetSpacing()), tuple(img.GetOrigin()),
                                                 tuple(img.GetDirection()))


def read_label_of(path: str | os.PathLike, image: np.ndarray, geom: Geometry, image_path) -> np.ndarray:
    """The label volume at ``path``, which must lie on the image's grid: same shape, spacing, origin and
    direction (a label on another grid would score the wrong voxels)."""
    label, lgeom = read_nifti(path)
    if label.shape != image.shape[-label.ndim:] or not lgeom.close_to(geom):
        raise SslsegError(f"{path}: not on the grid of {Path(image_path).name} (shape {label.shape} vs "
                          f"{image.shape[-label.ndim:]}, spacing {lgeom.spacing} vs {geom.spacing}, origin "
                          f"{lgeom.origin} vs {geom.origin}, direction {lgeom.direction} vs {geom.direction})")
    return label


def write_nifti(path: str | os.PathLike, array: np.ndarray, geom: Geometry) -> None:
    """Write ``array`` (array order) with ``geom``, atomically."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(array)
    img.SetSpacing(geom.spacing)
    if geom.origin:
        img.SetOrigin(geom.origin)
    if geom.direction:
        img.SetDirection(geom.direction)
    with atomic_path(path, suffix=".nii.gz") as tmp:
        sitk.WriteImage(img, str(tmp), useCompression=True)
        try:  # SimpleITK reports no write error (a full disk leaves a short or empty file): read it back
            _check_nifti_complete(tmp)
        except SslsegError:
            raise SslsegError(f"{path}: could not be written completely (disk full?)") from None


def read_image_2d(path: str | os.PathLike, mask_threshold: int | None = None) -> np.ndarray:
    """A 2D image file (PNG, JPEG, BMP, TIFF; read by SimpleITK) as (channels, H, W) float32, or, with
    ``mask_threshold``, as a binary uint8 (H, W) mask: 1 where the (channel-mean) value is >= the threshold
    (JPEG masks carry compression noise around 0 and 255)."""
    import SimpleITK as sitk

    arr = sitk.GetArrayFromImage(_read_sitk(Path(path)))
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise SslsegError(f"{path}: expected a 2D image, got an array of shape {arr.shape}")
    arr = np.moveaxis(arr, -1, 0).astype(np.float32)
    if mask_threshold is None:
        return arr
    return (arr.mean(0) >= mask_threshold).astype(np.uint8)
