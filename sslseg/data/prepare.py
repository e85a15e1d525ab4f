"""The shared raw -> prepared path: NIfTI pairs in the nnU-Net raw layout (``imagesTr/{case}_{k:04d}.nii.gz`` per
channel k + ``labelsTr/{case}.nii.gz``), intensity normalisation, optional resampling to a target spacing and
cropping, cases.csv and dataset.json.

Resampling follows nnU-Net's defaults: images with third-order splines, labels per class with linear
interpolation (each class's mask is resampled and a voxel takes the class whose resampled mask is >= 0.5, later
classes winning ties) or with nearest neighbour; both via ``scipy.ndimage.zoom`` with ``grid_mode=True`` (the
array's extent, not its corner voxels, is mapped onto the new grid, as skimage's ``resize``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from scipy import ndimage

from sslseg import SslsegError
from sslseg.data import SPLIT_DIR, DatasetSpec, read_split
from sslseg.io import (FORMAT, Case, Geometry, Source, atomic_path, check_case, read_image_2d, read_label_of,
                       read_nifti, read_release_h5, replace_folder, write_case, write_json)

__all__ = ["minmax", "rgb_unit", "ct_window", "zscore_nonzero", "resampled_shape", "resize_image", "resize_labels",
           "nonzero_box", "prepare_case", "restore_grid", "prepare_nifti", "prepare_image_folder",
           "prepare_downloaded_images", "zoom_corners", "write_tables",
           "write_cases", "labelled_by_slices", "volume_slices"]


def minmax(x: np.ndarray) -> np.ndarray:
    """Per-volume min-max to [0, 1] (SSL4MIS's ACDC preprocessing)."""
    lo, hi = float(x.min()), float(x.max())
    return ((x - lo) / (hi - lo if hi > lo else 1.0)).astype(np.float32)


def rgb_unit(x: np.ndarray) -> np.ndarray:
    """8-bit colour channels / 255 (DEC-Seg's scaling; no per-image statistics)."""
    return (np.asarray(x, np.float32) / 255.0).astype(np.float32)


def ct_window(lo: float, hi: float) -> Callable[[np.ndarray], np.ndarray]:
    def norm(x: np.ndarray) -> np.ndarray:
        return ((np.clip(x, lo, hi) - lo) / (hi - lo)).astype(np.float32)

    return norm


def zscore(x: np.ndarray) -> np.ndarray:
    """z-score over the whole volume, in float64 (UA-MT's LA preprocessing); a constant volume becomes 0."""
    x = x.astype(np.float64)
    return ((x - x.mean()) / max(float(x.std()), 1e-8)).astype(np.float32)


def zscore_nonzero(x: np.ndarray) -> np.ndarray:
    """z-score over the non-zero voxels, zeros kept (nnU-Net's MRI normalisation with a non-zero mask)."""
    mask = x != 0
    if not mask.any():
        return x.astype(np.float32)
    v = x[mask]
    return np.where(mask, (x - v.mean()) / max(float(v.std()), 1e-8), 0).astype(np.float32)


def xyz_release_case(path: Path, release: str, spacing: tuple[float, ...], n_classes: int) -> Case:
    """One file of a published 3D h5 release that stores ``image``/``label`` in (x, y, z) order (UA-MT's LA,
    MC-Net's Pancreas) as a Case in array order (z, y, x) with ``spacing``; the label as uint8."""
    image, label = read_release_h5(path, release)
    if image.ndim != 3 or image.shape != label.shape:
        raise SslsegError(f"{path}: image {image.shape} and label {label.shape} are not one 3D volume")
    case = Case(np.ascontiguousarray(image.transpose(2, 1, 0))[None].astype(np.float32),
                np.ascontiguousarray(label.transpose(2, 1, 0)), Geometry(tuple(spacing)))
    case = check_case(case, path, n_classes)
    case.label = case.label.astype(np.uint8)
    return case


def resampled_shape(shape: tuple[int, ...], spacing_zyx, target_zyx) -> tuple[int, ...]:
    return tuple(max(1, int(round(s * a / b))) for s, a, b in zip(shape, spacing_zyx, target_zyx))


def _zoom(x: np.ndarray, shape: tuple[int, ...], order: int) -> np.ndarray:
    if tuple(x.shape) == tuple(shape):
        return x.copy()
    factors = [n / o for n, o in zip(shape, x.shape)]
    out = ndimage.zoom(x, factors, order=order, mode="nearest", grid_mode=True)
    if out.shape != tuple(shape):  # zoom rounds the output shape itself; pin it to the requested one
        out = out[tuple(slice(0, s) for s in shape)]
        out = np.pad(out, [(0, s - o) for s, o in zip(shape, out.shape)], mode="edge")
    return out


def resize_image(image: np.ndarray, shape: tuple[int, ...], order: int = 3) -> np.ndarray:
    """(channels, *spatial) image to ``shape`` (spatial), each channel with a spline of ``order``."""
    return np.stack([_zoom(c.astype(np.float32), shape, order) for c in image]).astype(np.float32)


def resize_labels(label: np.ndarray, shape: tuple[int, ...], order: int = 1) -> np.ndarray:
    """A label map to ``shape``: ``order`` 0 nearest neighbour, 1 per-class linear (nnU-Net ``resize_segmentation``:
    each class's mask resampled linearly, thresholded at 0.5)."""
    if tuple(label.shape) == tuple(shape):
        return label.copy()
    if order == 0:
        return _zoom(label, shape, 0)
    out = np.zeros(shape, label.dtype)
    for c in np.unique(label[label != 0]):
        out[_zoom((label == c).astype(np.float32), shape, 1) >= 0.5] = c
    return out


def nonzero_box(image: np.ndarray) -> tuple[slice, ...]:
    """Bounding box (spatial) of the voxels that are non-zero in any channel; the whole array if none is."""
    mask = np.any(image != 0, axis=0)
    if not mask.any():
        return tuple(slice(0, s) for s in mask.shape)
    return ndimage.find_objects(mask.astype(np.uint8))[0]


def prepare_case(spec: DatasetSpec, image: np.ndarray, label: np.ndarray | None, geom: Geometry,
                 keep_original_label: bool) -> Case:
    """Crop, normalise (per channel) and resample one raw case; the original grid is recorded so predictions can
    be written back on it. ``keep_original_label`` stores the original label too (validation/test cases)."""
    shape = image.shape[1:]
    box = nonzero_box(image) if spec.crop == "nonzero" else tuple(slice(0, s) for s in shape)
    img = image[(slice(None),) + box]
    lab = None if label is None else label[box]
    img = np.stack([spec.normalise(c.astype(np.float32)) for c in img])
    out_geom = geom
    if spec.target_spacing is not None:
        target_zyx = tuple(reversed(spec.target_spacing))
        new = resampled_shape(img.shape[1:], geom.spacing_zyx, target_zyx)
        img = resize_image(img, new, spec.resample[0])
        lab = None if lab is None else resize_labels(lab, new, spec.resample[1])
        out_geom = Geometry(tuple(spec.target_spacing), geom.origin, geom.direction)
    changed = img.shape[1:] != shape or out_geom.spacing != geom.spacing
    source = Source(geom, tuple(shape), box) if changed else None
    orig = label if changed and keep_original_label else None
    return Case(img, lab, out_geom, source, orig)


def zoom_corners(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``x`` to ``shape`` by ``scipy.ndimage.zoom(x, factors, order=0)`` with scipy's defaults (corner pixels map
    onto corner pixels), the call DuoMod-Net and DEC-Seg make; the output shape pinned to ``shape``."""
    if tuple(x.shape) == tuple(shape):
        return x.copy()
    out = ndimage.zoom(x, [n / o for n, o in zip(shape, x.shape)], order=0)
    if out.shape != tuple(shape):
        out = out[tuple(slice(0, s) for s in shape)]
        out = np.pad(out, [(0, s - o) for s, o in zip(shape, out.shape)], mode="edge")
    return out


def restore_grid(pred: np.ndarray, case: Case, order: int = 1) -> tuple[np.ndarray, Geometry]:
    """A label map on the prepared grid of ``case`` back on its original grid (the inverse of ``prepare_case``):
    resampled (``order`` 1: per class linearly; 0: nearest, ``zoom_corners``) to the crop box and placed into a
    background volume of the original shape."""
    if case.source is None:
        return pred, case.geom
    box_shape = tuple(s.stop - s.start for s in case.source.box)
    full = np.zeros(case.source.shape, np.uint8)
    full[case.source.box] = zoom_corners(pred, box_shape) if order == 0 else resize_labels(pred, box_shape, order)
    return full, case.source.geom


def _load_pair(raw: Path, case: str, spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray, Geometry]:
    channels, geom = [], None
    for k in range(spec.info.in_channels):
        path = raw / "imagesTr" / f"{case}_{k:04d}.nii.gz"
        arr, g = read_nifti(path)
        if arr.ndim != 3:
            raise SslsegError(f"{path}: a {arr.ndim}D image; one 3D volume per channel file is expected")
        if geom is not None and (arr.shape != channels[0].shape or not g.close_to(geom)):
            raise SslsegError(f"{path}: shape or geometry differs from channel 0 of case {case}")
        channels.append(arr)
        geom = geom or g
    lab_path = raw / "labelsTr" / f"{case}.nii.gz"
    image = np.stack(channels).astype(np.float32)
    label = read_label_of(lab_path, image, geom, raw / "imagesTr" / f"{case}_0000.nii.gz")
    for old, new in spec.label_map.items():
        label[label == old] = new
    check_case(Case(image, label, geom), lab_path, spec.info.n_classes)
    return image, label.astype(np.uint8), geom


def prepare_nifti(spec: DatasetSpec, raw: Path, out: Path) -> None:
    """Prepare every case of the frozen splits; 2D datasets store training cases slice by slice."""
    rows = []

    def cases():
        for split in ("train", "val", "test"):
            for pid in read_split(spec.name, split):
                image, label, geom = _load_pair(raw, pid, spec)
                c = prepare_case(spec, image, label, geom, keep_original_label=split != "train")
                if spec.info.dims == 2 and split == "train" and c.image.ndim == 4:
                    g = Geometry(c.geom.spacing[:2], c.geom.origin[:2], ())
                    for k in range(c.image.shape[1]):
                        cid = f"{pid}_slice_{k}"
                        rows.append(dict(case=cid, patient=pid, split=split, shape=c.image.shape[2:],
                                         spacing=g.spacing_zyx))
                        yield cid, Case(c.image[:, k], c.label[k], g)
                else:
                    c.fg = spec.info.dims == 3 and split == "train"
                    extra = spec.case_columns(pid) if spec.case_columns else {}
                    rows.append(dict(case=pid, patient=pid, split=split, shape=c.image.shape[1:],
                                     spacing=c.geom.spacing_zyx, **extra))
                    yield pid, c

    write_cases(out, cases())
    write_tables(spec, out, rows, {"source": "NIfTI imagesTr/labelsTr"})


def _one_file(folder: Path, stem: str) -> Path:
    found = sorted(p for p in folder.glob(f"{stem}.*") if p.is_file())
    if len(found) != 1:
        raise SslsegError(f"{folder}: expected one file named {stem}.<ext>, found {len(found)}")
    return found[0]


def prepare_image_folder(spec: DatasetSpec, raw: Path, out: Path, images: str = "images", masks: str = "masks",
                         mask_threshold: int = 128) -> None:
    """2D image datasets (``images/{case}.<ext>`` + ``masks/{case}.<ext>``, as Kvasir-SEG or ISIC): every image is a
    case of (channels, H, W), normalised per channel; masks are binarised at ``mask_threshold`` (see
    ``sslseg.io.read_image_2d``). Image files carry no physical spacing. With ``spec.image_size`` the image and
    mask are stored at that size (``zoom_corners``) and the original mask kept for scoring. Extra cases.csv
    columns come from ``spec.case_columns`` (e.g. a polyp image's test set)."""
    rows = []

    def cases():
        for split in ("train", "val", "test"):
            for cid in read_split(spec.name, split):
                img_path = _one_file(raw / images, cid)
                image = read_image_2d(img_path)
                if image.shape[0] != spec.info.in_channels:
                    raise SslsegError(f"{img_path}: {image.shape[0]} channel(s), {spec.name} has "
                                      f"{spec.info.in_channels}")
                mask_path = _one_file(raw / masks, cid)
                label = read_image_2d(mask_path, mask_threshold)
                if label.shape != image.shape[1:]:
                    raise SslsegError(f"{mask_path}: mask {label.shape} and image {image.shape[1:]} differ in size")
                case = Case(np.stack([spec.normalise(c) for c in image]), label, Geometry((1.0, 1.0)))
                check_case(case, mask_path, spec.info.n_classes)
                if spec.image_size is not None and tuple(spec.image_size) != label.shape:
                    case = Case(np.stack([zoom_corners(c, spec.image_size) for c in case.image]),
                                zoom_corners(label, spec.image_size), case.geom,
                                Source(case.geom, label.shape, (slice(0, label.shape[0]), slice(0, label.shape[1]))),
                                label if split != "train" else None)
                extra = spec.case_columns(cid) if spec.case_columns else {}
                rows.append(dict(case=cid, patient=cid, split=split, shape=case.label.shape, spacing=(1.0, 1.0),
                                 **extra))
                yield cid, case

    write_cases(out, cases())
    write_tables(spec, out, rows, {"source": f"{images}/ + {masks}/ image files", "mask_threshold": mask_threshold})


def prepare_downloaded_images(spec: DatasetSpec, raw: Path, out: Path) -> None:
    """``prepare_image_folder`` over the download's ``raw/files/{images,masks}`` (the 2D colour releases: polyp,
    kvasir, isic2018, brainmri), masks foreground where >= 128 (DEC-Seg's ``label / 255 > 0.5``)."""
    if not (raw / "files").is_dir():
        raise SslsegError(f"{raw / 'files'}: no downloaded {spec.name}; run download first")
    prepare_image_folder(spec, raw / "files", out, mask_threshold=128)


def volume_slices(vid: str, case: Case):
    """The 2D cases ``{vid}_slice_{k}`` (k from 1, as the SSL4MIS ACDC release names them) of a 3D case, with the
    in-plane geometry."""
    g = Geometry(case.geom.spacing[:2], case.geom.origin[:2])
    for k in range(case.label.shape[0]):
        yield f"{vid}_slice_{k + 1}", Case(case.image[:, k], case.label[k], g)


def labelled_by_slices(rows: list[dict], slices: list[str], budget_slices: dict[int, int]) -> None:
    """Set ``labelled_{n}`` for budgets counted in slices (SSL4MIS ``patients_to_slices``, ABD's PROMISE12): the
    first ``budget_slices[n]`` ids of the ordered training ``slices`` are labelled."""
    for n, count in budget_slices.items():
        first = set(slices[:count])
        for r in rows:
            r[f"labelled_{n}"] = r["case"] in first


def write_cases(out: Path, cases) -> None:
    """Write ``(case id, Case)`` pairs into a temporary folder that replaces ``out/cases`` only when all succeed."""
    def fill(tmp: Path) -> None:
        for cid, case in cases:
            write_case(tmp / f"{cid}.h5", case)

    replace_folder(out / "cases", fill)


def write_tables(spec: DatasetSpec, out: Path, rows: list[dict], extra: dict, info=None) -> None:
    """cases.csv (with labelled_{n} flags: the patients of ``labelled_{n}.list`` where the dataset ships one, else
    the first n of train.list, unless set) and dataset.json."""
    info = info or spec.info
    df = pd.DataFrame(rows)
    both = set(df.loc[df["split"] == "train", "patient"]) & set(df.loc[df["split"] != "train", "patient"])
    if both:
        raise SslsegError(f"{spec.name}: patient(s) {sorted(both)[:5]} are in the training and an evaluation split")
    train_patients = read_split(spec.name, "train")
    for n in info.budgets:
        if f"labelled_{n}" in df:  # the dataset set its own flags (e.g. ACDC's first-N-slices rule)
            continue
        own = SPLIT_DIR / spec.name / f"labelled_{n}.list"
        chosen = read_split(spec.name, f"labelled_{n}") if own.is_file() else train_patients[:n]
        if outside := sorted(set(chosen) - set(train_patients)):
            raise SslsegError(f"{own}: labelled case(s) {outside[:3]} are not in train.list")
        df[f"labelled_{n}"] = df["patient"].isin(chosen) & (df["split"] == "train")
    df["shape"] = df["shape"].map(lambda s: "x".join(str(int(v)) for v in s))
    df["spacing"] = df["spacing"].map(lambda s: "x".join(f"{float(v):.6g}" for v in s))
    with atomic_path(out / "cases.csv") as tmp:
        df.to_csv(tmp, index=False)
    prep = {"target_spacing": spec.target_spacing, "crop": spec.crop, **spec.preparation, **extra}
    if spec.label_map:
        prep["label_map"] = {str(k): v for k, v in spec.label_map.items()}
    if spec.image_size:
        prep["image_size"] = list(spec.image_size)
    write_json(out / "dataset.json", {**info.to_json(), "format": FORMAT, "preparation": prep,
                                      "spacing_convention": "mm, array axis order (z, y, x); h5 attrs 'spacing' "
                                                            "are SimpleITK order (x, y, z)"})
