"""Training data: prepared cases read on demand, two-stream sampling (labelled / unlabelled), weak augmentation.

Cases are never all loaded up front. ``CaseStore`` reads a case the first time it is sampled and keeps it in memory
while the store's byte budget (``SSLSEG_CACHE_MB``, default 1024 per store) allows; beyond it, 3D patches are read
straight from the chunked h5 files (only the chunks the patch touches), so data sets far larger than memory train
in a bounded footprint.

2D (SSL4MIS ``RandomGenerator``, BCP variant): with p 0.5 rot90 (k in 0..3) + flip; otherwise with p 0.5 a
rotation by an integer angle in [-20, 20) (order 0); then zoom to the patch size (order 0). Training items are the
stored 2D cases, or every slice of stored volumes. ``geometric=False`` (schedule ``augment: none``, DEC-Seg's
loader) keeps only the zoom (2D) or the crop (3D).
3D: random crop of the patch (zero padding where the volume is smaller) + random flips, as UA-MT's
``RandomCrop``/``RandomRotFlip`` (rot90 only in the axial plane, and only when that plane is square); datasets
with left/right organ pairs (``mirror: false``) get crops only, so laterality stays learnable.
Every random draw comes from one ``numpy.random.Generator``, so the stream is fixed by the seed. ``Prefetcher``
makes the next batches in a background thread while the network trains on the current one: the same sampler in
the same order, so the stream -- and an exact resume -- do not depend on it.
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from sslseg import SslsegError
from sslseg.data import DatasetInfo, load_prepared
from sslseg.io import check_case, fg_voxel, read_case, read_fg_index, read_region, Case

__all__ = ["CaseStore", "TwoStreamSampler", "Prefetcher", "cache_budget"]


def cache_budget() -> int:
    """Bytes a CaseStore may keep in memory (``SSLSEG_CACHE_MB``, default 1024)."""
    return int(float(os.environ.get("SSLSEG_CACHE_MB", 1024)) * 2**20)


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in str(text).split("x"))


class CaseStore:
    """Cases of one prepared folder, read on demand; whole cases are cached (first come, never evicted) up to
    ``budget`` bytes, the rest are read region by region."""

    def __init__(self, folder: Path, ids: list[str], shapes: list[tuple[int, ...]], info: DatasetInfo,
                 labels: bool, budget: int | None = None) -> None:
        self.folder, self.ids, self.shapes, self.info, self.labels = Path(folder), ids, shapes, info, labels
        self.budget = cache_budget() if budget is None else budget
        self._cache: dict[int, Case] = {}
        self._used = 0

    def path(self, i: int) -> Path:
        return self.folder / f"{self.ids[i]}.h5"

    def __len__(self) -> int:
        return len(self.ids)

    def _bytes(self, i: int) -> int:
        return int(np.prod(self.shapes[i])) * (4 * self.info.in_channels + (1 if self.labels else 0))

    def read(self, i: int, region: tuple[slice, ...] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """(image (C, *region), label (*region) or None) of case ``i``; ``region`` None = the whole case."""
        case = self._cache.get(i)
        if case is None and self._used + self._bytes(i) <= self.budget:
            case = read_case(self.path(i), label=self.labels, n_classes=self.info.n_classes)
            self._check(i, case.image)
            self._cache[i], self._used = case, self._used + self._bytes(i)
        if case is not None:
            r = region or ()
            return case.image[(slice(None),) + r], None if case.label is None else case.label[r]
        if region is None:
            c = read_case(self.path(i), label=self.labels, n_classes=self.info.n_classes)
            return self._check(i, c.image), c.label
        img = read_region(self.path(i), "image", region)
        lab = read_region(self.path(i), "label", region) if self.labels else None
        check_case(Case(self._check(i, img), lab, None), self.path(i), self.info.n_classes)
        return img, lab

    def _check(self, i: int, image: np.ndarray) -> np.ndarray:
        if image.shape[0] != self.info.in_channels:
            raise SslsegError(f"{self.path(i)}: {image.shape[0]} channel(s), the dataset declares "
                              f"{self.info.in_channels}")
        return image


def _augment_2d(rng: np.random.Generator, img: np.ndarray, lab: np.ndarray | None, patch, geometric: bool = True):
    if geometric and rng.random() > 0.5:
        k = int(rng.integers(0, 4))
        img, lab = np.rot90(img, k, axes=(1, 2)), None if lab is None else np.rot90(lab, k)
        axis = int(rng.integers(0, 2))
        img, lab = np.flip(img, axis + 1), None if lab is None else np.flip(lab, axis)
    elif geometric and rng.random() > 0.5:
        angle = int(rng.integers(-20, 20))
        img = ndimage.rotate(img, angle, axes=(2, 1), order=0, reshape=False)
        lab = None if lab is None else ndimage.rotate(lab, angle, order=0, reshape=False)
    zoom = (patch[0] / img.shape[1], patch[1] / img.shape[2])
    if zoom != (1.0, 1.0):
        img = ndimage.zoom(img, (1.0,) + zoom, order=0)
        lab = None if lab is None else ndimage.zoom(lab, zoom, order=0)
    return np.ascontiguousarray(img), None if lab is None else np.ascontiguousarray(lab)


def _crop_box(rng: np.random.Generator, shape, patch, centre: np.ndarray | None) -> list[int]:
    """Start of the patch (in the volume's coordinates, negative where it is zero-padded): the volume is padded
    symmetrically to at least the patch, then cropped at random or around ``centre`` (kept inside)."""
    pad = [max(p - s, 0) // 2 for s, p in zip(shape, patch)]
    padded = [max(s, p) for s, p in zip(shape, patch)]
    if centre is None:
        start = [int(rng.integers(0, s - p + 1)) for s, p in zip(padded, patch)]
    else:
        start = [int(min(max(c + pb - p // 2, 0), s - p)) for c, pb, s, p in zip(centre, pad, padded, patch)]
    return [a - pb for a, pb in zip(start, pad)]


def _read_patch(store: CaseStore, i: int, start: list[int], patch) -> tuple[np.ndarray, np.ndarray | None]:
    shape = store.shapes[i]
    lo = [max(a, 0) for a in start]
    hi = [min(a + p, s) for a, p, s in zip(start, patch, shape)]
    img, lab = store.read(i, tuple(slice(a, b) for a, b in zip(lo, hi)))
    pad = [(a - s, p - (a - s) - (b - a)) for a, b, s, p in zip(lo, hi, start, patch)]
    if any(x for pr in pad for x in pr):
        img = np.pad(img, [(0, 0)] + pad)
        lab = None if lab is None else np.pad(lab, pad)
    return img, lab


def _flip_3d(rng: np.random.Generator, img: np.ndarray, lab: np.ndarray | None, patch):
    if patch[1] == patch[2]:
        k = int(rng.integers(0, 4))
        img, lab = np.rot90(img, k, axes=(2, 3)), None if lab is None else np.rot90(lab, k, axes=(1, 2))
    for axis in range(3):
        if rng.random() > 0.5:
            img, lab = np.flip(img, axis + 1), None if lab is None else np.flip(lab, axis)
    return img, lab


class TwoStreamSampler:
    """Labelled and unlabelled streams, each an endless sequence of reshuffled passes (TwoStreamBatchSampler).

    ``streams`` names the batch entries to produce: ``x_l``/``y_l`` (labelled), ``x_u`` (unlabelled) and
    ``x_u_mix`` (a second, independent pass over the unlabelled pool; CutMix sources as UniMatch's loader_u_mix).
    3D only: with probability ``fg_oversample`` a labelled patch is centred on a voxel of a foreground class drawn
    uniformly among the classes present (nnU-Net's class-balanced oversampling, 1/3 there). Unlabelled patches are
    always random crops: their labels are never read.
    """

    def __init__(self, prepared: Path, budget: int, patch, batch_l: int, batch_u: int, rng: np.random.Generator,
                 streams: frozenset[str] = frozenset({"x_l", "y_l"}), fg_oversample: float = 0.0,
                 geometric: bool = True) -> None:
        info, cases = load_prepared(prepared)
        col = f"labelled_{budget}"
        if col not in cases.columns:
            have = [c.split("_", 1)[1] for c in cases.columns if c.startswith("labelled_")]
            raise SslsegError(f"{Path(prepared) / 'cases.csv'}: no label budget {budget} (budgets: {', '.join(have)})")
        train = cases[cases["split"] == "train"]
        self.patch, self.dims, self.rng, self.geometric = tuple(patch), info.dims, rng, geometric
        self.mirror = info.mirror and geometric
        if len(self.patch) != info.dims:
            raise SslsegError(f"schedule/patch {list(patch)} has {len(patch)} axes; dataset {info.name} is "
                              f"{info.dims}D")
        folder = Path(prepared) / "cases"
        lab_rows, unl_rows = train[train[col]], train[~train[col]]
        self.lab = CaseStore(folder, lab_rows["case"].tolist(), [_shape(s) for s in lab_rows["shape"]], info, True)
        self.unl = CaseStore(folder, unl_rows["case"].tolist(), [_shape(s) for s in unl_rows["shape"]], info, False)
        if not len(self.lab):
            raise SslsegError(f"{Path(prepared) / 'cases.csv'}: budget {budget} selects no labelled case")
        wants_u = bool({"x_u", "x_u_mix"} & set(streams))
        if wants_u and not len(self.unl):
            raise SslsegError(f"{Path(prepared) / 'cases.csv'}: budget {budget} labels all {len(self.lab)} training "
                              "cases; no unlabelled case is left for a semi-supervised method")
        if wants_u and batch_u < 1:
            raise SslsegError("the method needs unlabelled data: set schedule/batch_unlabelled > 0")
        self.items_l, self.items_u = self._items(self.lab), self._items(self.unl)
        self.batch_l, self.batch_u = batch_l, batch_u if wants_u else 0
        self.mix = "x_u_mix" in streams
        self.fg_oversample = fg_oversample if info.dims == 3 else 0.0
        self.fg = [read_fg_index(self.lab.path(i)) for i in range(len(self.lab))] if self.fg_oversample else []
        self._queues: dict[str, list[int]] = {"l": [], "u": [], "m": []}

    def label_counts(self, n_classes: int) -> np.ndarray:
        """Voxels per class over the labelled cases (whole cases, read once)."""
        counts = np.zeros(n_classes, np.int64)
        for i in range(len(self.lab)):
            counts += np.bincount(self.lab.read(i)[1].ravel().astype(np.int64), minlength=n_classes)[:n_classes]
        return counts

    def _items(self, store: CaseStore) -> list[tuple[int, int | None]]:
        """Training items: (case, None) for cases of the training dimensionality, (case, z) per slice of stored
        volumes of a 2D dataset."""
        items = []
        for i, shape in enumerate(store.shapes):
            if len(shape) == self.dims:
                items.append((i, None))
            elif len(shape) == 3 and self.dims == 2:
                items.extend((i, z) for z in range(shape[0]))
            else:
                raise SslsegError(f"{store.path(i)}: a {len(shape)}D case cannot train a {self.dims}D network")
        return items

    def _take(self, key: str, pool_size: int, n: int) -> list[int]:
        q = self._queues[key]
        while len(q) < n:
            q.extend(self.rng.permutation(pool_size).tolist())
        out, self._queues[key] = q[:n], q[n:]
        return out

    def _centre(self, i: int) -> np.ndarray | None:
        if not self.fg_oversample or self.rng.random() >= self.fg_oversample or not self.fg[i]:
            return None
        cls = int(self.rng.choice(sorted(self.fg[i])))
        j = int(self.rng.integers(0, self.fg[i][cls]))
        return fg_voxel(self.lab.path(i), cls, j, self.lab.shapes[i])

    def _sample(self, store: CaseStore, item: tuple[int, int | None], labelled: bool):
        i, z = item
        if self.dims == 2:
            img, lab = store.read(i, None if z is None else (slice(z, z + 1),))
            if z is not None:
                img, lab = img[:, 0], None if lab is None else lab[0]
            return _augment_2d(self.rng, img, lab, self.patch, self.geometric)
        start = _crop_box(self.rng, store.shapes[i], self.patch, self._centre(i) if labelled else None)
        img, lab = _read_patch(store, i, start, self.patch)
        if self.mirror:
            img, lab = _flip_3d(self.rng, img, lab, self.patch)
        return np.ascontiguousarray(img), None if lab is None else np.ascontiguousarray(lab)

    def _batch(self, store: CaseStore, items, key: str, n: int, labelled: bool):
        pairs = [self._sample(store, items[k], labelled) for k in self._take(key, len(items), n)]
        x = torch.from_numpy(np.stack([p[0] for p in pairs])).float()
        return x, torch.from_numpy(np.stack([p[1] for p in pairs])).long() if labelled else None

    def next(self) -> dict[str, torch.Tensor]:
        x_l, y_l = self._batch(self.lab, self.items_l, "l", self.batch_l, True)
        batch = {"x_l": x_l, "y_l": y_l}
        if self.batch_u:
            batch["x_u"] = self._batch(self.unl, self.items_u, "u", self.batch_u, False)[0]
            if self.mix:
                batch["x_u_mix"] = self._batch(self.unl, self.items_u, "m", self.batch_u, False)[0]
        return batch

    def state(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "queues": {k: list(v) for k, v in self._queues.items()}}

    def load_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self._queues = {"l": [], "u": [], "m": [], **{k: list(v) for k, v in state["queues"].items()}}


class Prefetcher:
    """Up to ``depth`` batches of ``sampler`` made ahead by one background thread (reading, augmentation, and
    page-locking when ``pin``: host-to-GPU copies can then overlap the device's work, as DataLoader's workers do).

    The thread is the sampler's only user and draws its batches in order, so the batches are the sampler's own,
    whatever the depth; ``state()`` is the sampler's state after the last batch *handed out* (not after the ones
    made ahead), so a resume state saved from it continues exactly there. An error in the thread (a damaged case)
    is raised by the ``next()`` that would have returned its batch.
    """

    def __init__(self, sampler: TwoStreamSampler, depth: int = 2, pin: bool = False) -> None:
        self.sampler, self.pin = sampler, pin
        self._state = sampler.state()
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="sslseg-prefetch", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self.sampler.next()
                if self.pin:
                    batch = {k: v.pin_memory() for k, v in batch.items()}
                item = (batch, self.sampler.state(), None)
            except BaseException as e:  # noqa: BLE001 - handed to the consumer, which raises it
                item = (None, None, e)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[2] is not None:
                return

    def next(self) -> dict[str, torch.Tensor]:
        batch, state, error = self._queue.get()
        if error is not None:
            self.close()
            raise error
        self._state = state
        return batch

    def state(self) -> dict:
        return self._state

    def close(self) -> None:
        """Stop the thread (batches made ahead are dropped: ``state()`` does not count them)."""
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
