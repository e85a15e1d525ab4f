"""PROMISE12 (Litjens et al., MedIA 2014): prostate T2w MRI, 50 labelled training cases of the challenge, from the
Zenodo record 8026660 (``training_data.zip``, SHA-256 pinned below; ``Case00.mhd`` ... ``Case49.mhd`` with
``CaseXX_segmentation.mhd`` and their ``.raw`` files at the archive root), a local copy of it, or a local folder of
those files.

Preprocessing follows the SSL convention of ABD/SCP-Net, which SSCD's ``dataloaders/promise12.py`` repeats: every
slice resized to 224 x 224 with OpenCV's nearest neighbour (source index floor(i * n_in / n_out), image and mask
alike), min-max normalised per slice, then smoothed by SimpleITK's CurvatureFlow (5 iterations, time step 0.125).
Cases 0-34 train (stored as slices ``CaseXX_slice_k``, k from 1), 35-39 validate, 40-49 test (stored as
224 x 224 x Z volumes and scored there, as the papers do, without resizing back). A budget of 7 labelled cases
("20 %") is the first 202 training slices, as ABD counts it. The in-plane spacing is kept, scaled by the resize,
so the ``strict`` protocol reports millimetres; ``ssl4mis-2d`` reports voxels like the papers.

Departures: a constant slice normalises to 0 (the reference divides by zero); SSCD validates on its test list,
here validation uses cases 35-39.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from sslseg import SslsegError
from sslseg.data import DATASETS, DatasetInfo, DatasetSpec, read_split
from sslseg.data.download import incoming, unpack
from sslseg.data.prepare import labelled_by_slices, volume_slices, write_cases, write_tables
from sslseg.io import Case, Geometry, check_case, read_label_of, read_nifti, replace_folder

__all__ = ["URL", "SHA256", "SIZE", "BUDGET_SLICES", "nearest_resize", "preprocess_slices"]

URL = "https://zenodo.org/records/8026660/files/training_data.zip"
SHA256 = "150287d0c74cd0105d8b70b43af4a7bf4f1fd3e1748829779177a0ccaf948f45"
SIZE = 224
BUDGET_SLICES = {7: 202}
N_CASES = 50


def nearest_resize(x: np.ndarray, size: int = SIZE) -> np.ndarray:
    """(Z, H, W) -> (Z, size, size), each slice resized as OpenCV's INTER_NEAREST: out[i] = in[floor(i * H / size)]."""
    rows = np.minimum((np.arange(size) * (x.shape[1] / size)).astype(np.int64), x.shape[1] - 1)
    cols = np.minimum((np.arange(size) * (x.shape[2] / size)).astype(np.int64), x.shape[2] - 1)
    return x[:, rows][:, :, cols]


def preprocess_slices(image: np.ndarray) -> np.ndarray:
    """Resized (Z, H, W) slices -> per-slice min-max to [0, 1], then CurvatureFlow (5 iterations, step 0.125)."""
    import SimpleITK as sitk

    out = np.empty(image.shape, np.float32)
    for k, s in enumerate(image.astype(np.float64)):
        lo, hi = s.min(), s.max()
        s = (s - lo) / (hi - lo) if hi > lo else np.zeros_like(s)
        out[k] = sitk.GetArrayFromImage(sitk.CurvatureFlow(sitk.GetImageFromArray(s), timeStep=0.125,
                                                           numberOfIterations=5))
    return out


def _names(i: int) -> tuple[str, str]:
    return f"Case{i:02d}.mhd", f"Case{i:02d}_segmentation.mhd"


def download(source: str, raw: Path, sha256: str | None = None) -> dict:
    """Fetch ``source`` (default: the Zenodo archive, verified against the pinned SHA-256 unless ``sha256`` is
    given) into ``raw/mhd``; a local folder is taken as is (nothing to verify it against). An earlier download is
    replaced only once the new one is complete."""
    source = source or URL
    with incoming(raw) as work:
        return _install(source, raw, *unpack(source, work, sha256 or SHA256))


def _install(source: str, raw: Path, tree: Path, digest: str | None) -> dict:
    found = sorted(tree.rglob(_names(0)[0]))
    if not found:
        raise SslsegError(f"{source}: no Case00.mhd inside; expected the PROMISE12 training_data layout "
                          "(CaseXX.mhd/.raw and CaseXX_segmentation.mhd/.raw)")
    root = found[0].parent
    missing = [n for i in range(N_CASES) for n in _names(i) if not (root / n).is_file()]
    if missing:
        raise SslsegError(f"{root}: {len(missing)} PROMISE12 file(s) missing, e.g. {missing[0]}")

    def fill(tmp: Path) -> None:
        for p in sorted(root.glob("Case*")):
            shutil.copyfile(p, tmp / p.name)

    replace_folder(raw / "mhd", fill)
    return {"kind": "mhd", "sha256": digest or "not verified (local folder)"}


def _volume(root: Path, cid: str, n_classes: int) -> Case:
    img_path, seg_path = root / f"{cid}.mhd", root / f"{cid}_segmentation.mhd"
    image, geom = read_nifti(img_path)
    if image.ndim != 3:
        raise SslsegError(f"{img_path}: expected a 3D volume, got shape {image.shape}")
    label = read_label_of(seg_path, image, geom, img_path)
    check_case(Case(image[None].astype(np.float32), label, geom), seg_path, n_classes)
    _, h, w = image.shape
    sx, sy, sz = geom.spacing
    spacing = (sx * w / SIZE, sy * h / SIZE, sz)
    return Case(preprocess_slices(nearest_resize(image))[None], nearest_resize(label).astype(np.uint8),
                Geometry(spacing, geom.origin, geom.direction))


def preprocess(spec: DatasetSpec, raw: Path, out: Path) -> None:
    root = raw / "mhd"
    if not root.is_dir():
        raise SslsegError(f"{root}: no downloaded PROMISE12; run download first")
    rows: list[dict] = []
    slices: list[str] = []
    n = spec.info.n_classes

    def cases():
        for cid in read_split("promise12", "train"):
            for sid, s in volume_slices(cid, _volume(root, cid, n)):
                slices.append(sid)
                rows.append(dict(case=sid, patient=cid, split="train", shape=(SIZE, SIZE), spacing=s.geom.spacing_zyx))
                yield sid, s
        for split in ("val", "test"):
            for cid in read_split("promise12", split):
                c = _volume(root, cid, n)
                rows.append(dict(case=cid, patient=cid, split=split, shape=c.spatial_shape,
                                 spacing=c.geom.spacing_zyx))
                yield cid, c

    write_cases(out, cases())
    if len(slices) < max(BUDGET_SLICES.values()):
        raise SslsegError(f"{root}: {len(slices)} training slices, fewer than a budget needs "
                          f"({max(BUDGET_SLICES.values())})")
    labelled_by_slices(rows, slices, BUDGET_SLICES)
    write_tables(spec, out, rows, {"source": "mhd", "size": SIZE, "budget_slices": {str(k): v for k, v in
                                                                                    BUDGET_SLICES.items()},
                                   "smoothing": "CurvatureFlow, 5 iterations, time step 0.125"})


DATASETS.register("promise12")(DatasetSpec(DatasetInfo(
    "promise12", classes={1: "prostate"}, dims=2, modality="T2w MRI",
    intensity="slices resized to 224x224 (nearest), per-slice min-max to [0, 1], CurvatureFlow (ABD/SSCD)",
    budget_unit="labelled cases", budgets=tuple(BUDGET_SLICES)), download=download, preprocess=preprocess))
