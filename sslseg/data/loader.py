"""Training data: prepared cases in memory, two-stream sampling (labelled / unlabelled) and weak augmentation.

2D (SSL4MIS ``RandomGenerator``, BCP variant): with p 0.5 rot90 (k in 0..3) + flip; otherwise with p 0.5 a
rotation by an integer angle in [-20, 20) (order 0); then zoom to the patch size (order 0).
3D: random crop of the patch (zero padding where the volume is smaller) + random flips, as UA-MT's
``RandomCrop``/``RandomRotFlip`` (rot90 only in the axial plane, and only when that plane is square); datasets
with left/right organ pairs (dataset.json ``mirror: false``) get crops only, so laterality stays learnable.
Every random draw comes from one ``numpy.random.Generator``, so the stream is fixed by the seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import ndimage

from sslseg import SslsegError
from sslseg.io import read_case

__all__ = ["load_prepared", "TwoStreamSampler"]


def load_prepared(prepared: Path) -> tuple[dict, pd.DataFrame]:
    prepared = Path(prepared)
    for name in ("dataset.json", "cases.csv"):
        if not (prepared / name).is_file():
            raise SslsegError(f"{prepared / name}: missing; run `sslseg preprocess` first")
    meta = json.loads((prepared / "dataset.json").read_text())
    cases = pd.read_csv(prepared / "cases.csv")
    return meta, cases


def _augment_2d(rng: np.random.Generator, img: np.ndarray, lab: np.ndarray, patch) -> tuple[np.ndarray, np.ndarray]:
    if rng.random() > 0.5:
        k = int(rng.integers(0, 4))
        img, lab = np.rot90(img, k), np.rot90(lab, k)
        axis = int(rng.integers(0, 2))
        img, lab = np.flip(img, axis), np.flip(lab, axis)
    elif rng.random() > 0.5:
        angle = int(rng.integers(-20, 20))
        img = ndimage.rotate(img, angle, order=0, reshape=False)
        lab = ndimage.rotate(lab, angle, order=0, reshape=False)
    zoom = (patch[0] / img.shape[0], patch[1] / img.shape[1])
    if zoom != (1.0, 1.0):
        img, lab = ndimage.zoom(img, zoom, order=0), ndimage.zoom(lab, zoom, order=0)
    return np.ascontiguousarray(img), np.ascontiguousarray(lab)


def _augment_3d(rng: np.random.Generator, img: np.ndarray, lab: np.ndarray, patch,
                centre: np.ndarray | None = None, mirror: bool = True) -> tuple[np.ndarray, np.ndarray]:
    pad = [(max(p - s, 0) // 2, max(p - s, 0) - max(p - s, 0) // 2) for s, p in zip(img.shape, patch)]
    if any(sum(p) for p in pad):
        img, lab = np.pad(img, pad), np.pad(lab, pad)
    if centre is None:
        start = [int(rng.integers(0, s - p + 1)) for s, p in zip(img.shape, patch)]
    else:  # crop around a given voxel, kept inside the volume
        start = [int(min(max(c + pb[0] - p // 2, 0), s - p)) for c, pb, s, p in zip(centre, pad, img.shape, patch)]
    sl = tuple(slice(a, a + p) for a, p in zip(start, patch))
    img, lab = img[sl], lab[sl]
    if not mirror:
        return np.ascontiguousarray(img), np.ascontiguousarray(lab)
    if patch[1] == patch[2]:
        k = int(rng.integers(0, 4))
        img, lab = np.rot90(img, k, axes=(1, 2)), np.rot90(lab, k, axes=(1, 2))
    for axis in range(3):
        if rng.random() > 0.5:
            img, lab = np.flip(img, axis), np.flip(lab, axis)
    return np.ascontiguousarray(img), np.ascontiguousarray(lab)


class TwoStreamSampler:
    """Labelled and unlabelled streams, each an endless sequence of reshuffled passes (TwoStreamBatchSampler).

    3D only: with probability ``fg_oversample`` a labelled patch is centred on a voxel of a foreground class drawn
    uniformly among the classes present (nnU-Net's class-balanced oversampling, 1/3 there). Unlabelled patches are
    always random crops: their labels are never read.
    """

    def __init__(self, prepared: Path, budget: int, patch, dims: int, n_classes: int,
                 batch_l: int, batch_u: int, rng: np.random.Generator, fg_oversample: float = 0.0,
                 mix_batch: bool = False) -> None:
        meta, cases = load_prepared(prepared)
        col = f"labelled_{budget}"
        if col not in cases.columns:
            have = [c.split("_", 1)[1] for c in cases.columns if c.startswith("labelled_")]
            raise SslsegError(f"{Path(prepared) / 'cases.csv'}: no label budget {budget} (budgets: {', '.join(have)})")
        train = cases[cases["split"] == "train"]
        self.patch, self.dims, self.rng = tuple(patch), dims, rng
        self.mirror = bool(meta.get("mirror", True))
        if len(self.patch) != dims:
            raise SslsegError(f"schedule/patch {list(patch)} has {len(patch)} axes; dataset is {dims}D")
        folder = Path(prepared) / "cases"
        self.lab = [read_case(folder / f"{c}.h5", n_classes=n_classes) for c in train.loc[train[col], "case"]]
        self.unl = [read_case(folder / f"{c}.h5", labels=False) for c in train.loc[~train[col], "case"]] if batch_u else []
        if not self.lab:
            raise SslsegError(f"{Path(prepared) / 'cases.csv'}: budget {budget} selects no labelled case")
        self.batch_l, self.batch_u = batch_l, batch_u if self.unl else 0
        self.mix_batch = mix_batch
        self.fg_oversample = fg_oversample if dims == 3 else 0.0
        self.fg_voxels = [{int(k): np.argwhere(c.label == k) for k in np.unique(c.label) if k} if self.fg_oversample
                          else {} for c in self.lab]
        for c in self.unl:
            c.label = np.zeros_like(c.image, np.uint8)  # placeholder: unlabelled labels are never loaded
        self._queues: dict[str, list[int]] = {"l": [], "u": [], "m": []}

    def _take(self, key: str, pool_size: int, n: int) -> list[int]:
        q = self._queues[key]
        while len(q) < n:
            q.extend(self.rng.permutation(pool_size).tolist())
        out, self._queues[key] = q[:n], q[n:]
        return out

    def _centre(self, i: int) -> np.ndarray | None:
        if not self.fg_oversample or self.rng.random() >= self.fg_oversample or not self.fg_voxels[i]:
            return None
        vox = self.fg_voxels[i][int(self.rng.choice(sorted(self.fg_voxels[i])))]
        return vox[int(self.rng.integers(0, len(vox)))]

    def _batch(self, cases, idx, labelled: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if self.dims == 2:
            pairs = [_augment_2d(self.rng, cases[i].image, cases[i].label, self.patch) for i in idx]
        else:
            pairs = [_augment_3d(self.rng, cases[i].image, cases[i].label, self.patch,
                                 self._centre(i) if labelled else None, self.mirror) for i in idx]
        x = torch.from_numpy(np.stack([p[0] for p in pairs]))[:, None].float()
        y = torch.from_numpy(np.stack([p[1] for p in pairs])).long()
        return x, y

    def next(self) -> dict[str, torch.Tensor]:
        x_l, y_l = self._batch(self.lab, self._take("l", len(self.lab), self.batch_l), True)
        batch = {"x_l": x_l, "y_l": y_l}
        if self.batch_u:
            batch["x_u"] = self._batch(self.unl, self._take("u", len(self.unl), self.batch_u), False)[0]  # labels never leave
            if self.mix_batch:  # CutMix sources: an independent pass over the unlabelled pool (UniMatch loader_u_mix)
                batch["x_u_mix"] = self._batch(self.unl, self._take("m", len(self.unl), self.batch_u), False)[0]
        return batch

    def state(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "queues": {k: list(v) for k, v in self._queues.items()}}

    def load_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self._queues = {"l": [], "u": [], "m": [], **{k: list(v) for k, v in state["queues"].items()}}
