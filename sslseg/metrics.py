"""Segmentation metrics with voxel spacing, identical to medpy 0.5.2 ``dc``, ``jc``, ``hd95``, ``asd``.

Definitions (medpy 0.5.2, ``medpy.metric.binary``):
* surface of a mask = mask XOR its binary erosion (connectivity 1; voxels on the array edge count as surface);
* distances = Euclidean distance transform (with ``spacing``) from one surface to the other; here the same values
  are computed at the surface voxels only (0 where the surfaces meet, else the nearest surface voxel among the
  offsets up to four spacings, else by a k-d tree; its distance by scipy's formula), which is exact and never
  transforms the whole volume (see ``_directed``);
* ``hd95`` = 95th percentile of the distances of *both* directions pooled; ``asd`` = mean distance from the
  prediction's surface to the reference's (directed).
Both masks are cropped to the bounding box of their union first (with the same slice; ``case_metrics`` crops the
case to the box of its foreground once before), which leaves every distance unchanged. Dice and Jaccard in
``case_metrics`` come from the same counts medpy divides. Speed against medpy: benchmarks/bench_metrics.py.

Empty masks: medpy's dc/jc intend 1.0 when both are empty (under numpy 2 its dc gives NaN with a warning;
``dc``/``jc`` here return 1.0, and ``case_metrics`` never scores two empty masks with them) and medpy raises for
distances if either is empty. Here each case x class gets a ``status`` (``ok``, ``both_empty``, ``pred_empty``,
``ref_empty``) and the values follow a named policy (see ``EMPTY_POLICIES``); nothing is silently 0.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np

__all__ = ["dc", "jc", "hd95", "asd", "surface_distances", "average_hausdorff", "dice_per_class", "case_metrics",
           "saliency_metrics", "SALIENCY", "EMPTY_POLICIES"]

EMPTY_POLICIES = {
    "penalty": "one-sided empty: Dice/Jaccard 0, HD95/ASD = image diagonal; both empty: excluded and counted",
    "exclude": "one-sided empty: Dice/Jaccard 0, HD95/ASD NaN (excluded and counted); both empty: excluded and counted",
    "zero": "one-sided empty: all four metrics 0 (BCP test script; flatters HD95/ASD); both empty: excluded and counted",
    "duomod": "both empty: Dice/Jaccard 1, HD95/ASD 0 (scored, as DuoMod-Net's evaluation); one-sided empty: "
              "Dice/Jaccard 0, HD95/ASD NaN (left out of the distance means and counted as a missed or spurious "
              "structure)",
    "decseg": "Dice/Jaccard 0 whenever the prediction or the reference is empty, both empty included (scored, as "
              "DEC-Seg's test script); HD95/ASD NaN then (excluded and counted)",
}


def dc(result: np.ndarray, reference: np.ndarray) -> float:
    """Dice; 1.0 when both are empty (as medpy)."""
    result, reference = np.asarray(result, bool), np.asarray(reference, bool)
    inter = np.count_nonzero(result & reference)
    size = np.count_nonzero(result) + np.count_nonzero(reference)
    return 2.0 * inter / size if size else 1.0


def jc(result: np.ndarray, reference: np.ndarray) -> float:
    """Jaccard; 1.0 when both are empty (as medpy)."""
    result, reference = np.asarray(result, bool), np.asarray(reference, bool)
    union = np.count_nonzero(result | reference)
    return np.count_nonzero(result & reference) / union if union else 1.0


def _box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The bounding box of ``mask`` (None when empty), from one projection per axis, each taken over the box found
    so far (the rows outside it hold nothing)."""
    box = [slice(None)] * mask.ndim
    for ax in range(mask.ndim):
        hit = np.flatnonzero(mask[tuple(box)].any(axis=tuple(k for k in range(mask.ndim) if k != ax)))
        if not len(hit):
            return None
        box[ax] = slice(int(hit[0]), int(hit[-1]) + 1)
    return tuple(box)


def _crop(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``a`` and ``b`` cut to the box that holds both; ValueError when either is empty."""
    box_a, box_b = _box(a), _box(b)
    if box_a is None or box_b is None:
        raise ValueError("surface distances need two non-empty masks")
    box = tuple(slice(min(p.start, q.start), max(p.stop, q.stop)) for p, q in zip(box_a, box_b))
    return a[box], b[box]


def _surface(mask: np.ndarray) -> np.ndarray:
    """``mask`` XOR its binary erosion with the connectivity-1 cross, voxels on the array edge counting as surface
    (scipy's ``binary_erosion`` with border value 0, as medpy), by shifted ANDs."""
    inner = mask.copy()
    for ax in range(mask.ndim):
        lo, hi = [slice(None)] * mask.ndim, [slice(None)] * mask.ndim
        lo[ax], hi[ax] = 0, -1
        inner[tuple(lo)] = inner[tuple(hi)] = False
        lo[ax], hi[ax] = slice(1, None), slice(None, -1)
        inner[tuple(lo)] &= mask[tuple(hi)]
        inner[tuple(hi)] &= mask[tuple(lo)]
    return mask & ~inner


def _squared_length(offset: np.ndarray, sampling: np.ndarray) -> np.ndarray:
    """Squared lengths of integer index offsets (..., ndim) as scipy's ``distance_transform_edt`` computes them from
    its feature transform: offset * sampling per axis, squared, summed over the axes in order."""
    d = offset.astype(np.float64) * sampling
    d *= d
    total = d[..., 0].copy()
    for k in range(1, d.shape[-1]):
        total += d[..., k]
    return total


def _scipy_distance(offset: np.ndarray, sampling: np.ndarray) -> np.ndarray:
    """Lengths of integer index offsets (n, ndim), scipy's square root of ``_squared_length``."""
    return np.sqrt(_squared_length(offset, sampling))


@lru_cache(maxsize=64)
def _shells(spacing: tuple[float, ...], radius: float) -> tuple[np.ndarray, list[tuple[float, np.ndarray]]]:
    """Every non-zero offset no longer than ``radius``, grouped by length, shortest first: (half-widths of the
    window that holds them, [(length, offsets)])."""
    sampling = np.asarray(spacing, dtype=np.float64)
    half = np.floor(radius / sampling + 1e-9).astype(int)
    grid = np.stack(np.meshgrid(*[np.arange(-h, h + 1) for h in half], indexing="ij"), -1).reshape(-1, len(half))
    grid = grid[np.any(grid != 0, axis=1)]
    length = _scipy_distance(grid, sampling)
    grid, length = grid[length <= radius], length[length <= radius]
    return half, [(float(v), grid[length == v]) for v in np.unique(length)]


# In units of the smallest spacing: offsets up to it are looked up, farther ones found by a k-d tree (4: the
# fastest of 1-6 on LA-like volumes, no slower on ACDC or on predictions far off; benchmarks/bench_metrics.py).
SHELL_RADIUS = 4.0
# Voxels left beyond the shells x surface voxels up to which every pair is measured instead of building a tree.
BRUTE_FORCE_PAIRS = 250_000


def _directed(s_src: np.ndarray, s_dst: np.ndarray, src: np.ndarray, dst: np.ndarray,
              sampling: np.ndarray) -> np.ndarray:
    """For each voxel of surface ``s_src`` (indices ``src``, C order), the distance to the nearest voxel of surface
    ``s_dst`` (indices ``dst``), as scipy's ``distance_transform_edt`` gives it (``_scipy_distance`` of the offset
    to the nearest): 0 on ``s_dst`` itself; then the offsets up to ``SHELL_RADIUS`` smallest spacings, shortest
    first (all of them are looked up, so the first hit is the nearest); the rest from a k-d tree over physical
    coordinates (or every pair, when few are left)."""
    out = np.zeros(len(src))
    todo = np.flatnonzero(~s_dst[s_src])
    if len(todo):
        half, shells = _shells(tuple(sampling.tolist()), SHELL_RADIUS * float(sampling.min()))
        padded = np.pad(s_dst, [(h, h) for h in half])
        flat = padded.ravel()
        at = np.ravel_multi_index(tuple((src[todo] + half).T), padded.shape)
        steps = np.array(padded.strides) // padded.itemsize
        for length, offsets in shells:
            hit = flat[at[:, None] + offsets @ steps].any(axis=1)
            out[todo[hit]] = length
            todo, at = todo[~hit], at[~hit]
            if not len(todo):
                break
    if len(todo) and len(todo) * len(dst) <= BRUTE_FORCE_PAIRS:  # a few stray voxels: every pair, in chunks
        q = src[todo]
        best = np.empty(len(q))
        rows = max(1, BRUTE_FORCE_PAIRS // 8 // len(dst))
        for i in range(0, len(q), rows):
            best[i:i + rows] = _squared_length(dst[None, :, :] - q[i:i + rows, None, :], sampling).min(axis=1)
        out[todo] = np.sqrt(best)
    elif len(todo):
        from scipy.spatial import cKDTree  # half a second to import: only when needed

        q = src[todo]
        tree = cKDTree(dst * sampling, balanced_tree=False)  # builds in half the time, queries as fast
        _, nearest = tree.query(q * sampling)  # one thread: evaluate is a one-core job of the workflow
        out[todo] = _scipy_distance(dst[nearest] - q, sampling)
    return out


def surface_distances(result: np.ndarray, reference: np.ndarray,
                      spacing: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Distances result->reference and reference->result surfaces (both masks must be non-empty), in the order
    medpy visits the surface voxels (C order), with medpy's values (see ``_directed``)."""
    result = np.atleast_1d(np.asarray(result, bool))
    reference = np.atleast_1d(np.asarray(reference, bool))
    if result.shape != reference.shape:
        raise ValueError(f"result shape {result.shape} != reference shape {reference.shape}")
    if spacing is not None and len(spacing) != result.ndim:
        raise ValueError(f"spacing {tuple(spacing)} has {len(spacing)} values for a {result.ndim}D mask")
    result, reference = _crop(result, reference)
    s_res, s_ref = _surface(result), _surface(reference)
    sampling = np.ones(result.ndim) if spacing is None else np.asarray(spacing, dtype=np.float64)
    p_res, p_ref = np.argwhere(s_res), np.argwhere(s_ref)
    return _directed(s_res, s_ref, p_res, p_ref, sampling), _directed(s_ref, s_res, p_ref, p_res, sampling)


_LAST: list = []  # [key, distances] of the last pair hd95/asd measured: callers ask both of one pair in turn


def _pair_distances(result, reference, spacing) -> tuple[np.ndarray, np.ndarray]:
    """``surface_distances`` of the pair, reused when the same masks (by content) and spacing come again."""
    result, reference = np.asarray(result, bool), np.asarray(reference, bool)
    key = (result.shape, reference.shape, None if spacing is None else tuple(float(s) for s in spacing),
           np.packbits(result).tobytes(), np.packbits(reference).tobytes())
    if not _LAST or _LAST[0] != key:
        _LAST[:] = [key, surface_distances(result, reference, spacing)]
    return _LAST[1]


def hd95(result: np.ndarray, reference: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    a, b = _pair_distances(result, reference, spacing)
    return float(np.percentile(np.hstack((a, b)), 95))


def asd(result: np.ndarray, reference: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """Mean distance of the result's surface to the reference's (directed)."""
    return float(_pair_distances(result, reference, spacing)[0].mean())


def average_hausdorff(result: np.ndarray, reference: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """SimpleITK's ``HausdorffDistanceImageFilter.GetAverageHausdorffDistance``, DuoMod-Net's "ASD": the mean of
    the two directed averages, each over *every* voxel of one mask (not its surface) of the distance to the
    nearest voxel of the other; ``spacing`` in array order (mm), None = voxels. Both masks must be non-empty."""
    import SimpleITK as sitk

    images = []
    for m in (result, reference):
        img = sitk.GetImageFromArray(np.asarray(m, np.uint8))
        img.SetSpacing(tuple(float(v) for v in (spacing if spacing is not None else (1.0,) * m.ndim))[::-1])
        images.append(img)
    f = sitk.HausdorffDistanceImageFilter()
    f.Execute(*images)
    return float(f.GetAverageHausdorffDistance())


def dice_per_class(pred: np.ndarray, ref: np.ndarray, classes: Iterable[int]) -> list[float]:
    """Hard Dice per class; NaN when both are empty (for validation means)."""
    out = []
    for c in classes:
        p, r = pred == c, ref == c
        s = np.count_nonzero(p) + np.count_nonzero(r)
        out.append(2.0 * np.count_nonzero(p & r) / s if s else np.nan)
    return out


def case_metrics(pred: np.ndarray, ref: np.ndarray, classes: Iterable[int], spacing: Sequence[float] | None,
                 policy: str = "penalty", members: dict[int, Sequence[int]] | None = None,
                 asd_kind: str = "surface") -> list[dict]:
    """One row per class: dice, jaccard, hd95, asd, tp/fp/fn, sizes and the empty-mask status. ``members`` makes a
    "class" a region, the union of several label ids (e.g. BraTS whole tumour = labels 1, 2, 3). ``asd_kind``
    ``average_hausdorff`` makes asd ``average_hausdorff`` (DuoMod-Net) instead of medpy's surface ASD."""
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} != reference shape {ref.shape}")
    if policy not in EMPTY_POLICIES:
        raise ValueError(f"unknown empty policy {policy!r} (known: {', '.join(EMPTY_POLICIES)})")
    sp = np.ones(pred.ndim) if spacing is None else np.asarray(spacing, float)
    diagonal = float(np.sqrt(np.sum((np.asarray(pred.shape) * sp) ** 2)))
    classes = list(classes)
    scored = classes if members is None else [i for c in classes for i in members[c]]
    if 0 not in scored:  # every scored voxel lies in the box of the foreground: crop once (distances unchanged)
        box = _box((pred != 0) | (ref != 0))
        if box is not None:
            pred, ref = pred[box], ref[box]
    rows = []
    for c in classes:
        if members is None:
            p, r = pred == c, ref == c
        elif len(members[c]) == 1:
            p, r = pred == members[c][0], ref == members[c][0]
        else:
            p, r = np.isin(pred, members[c]), np.isin(ref, members[c])
        tp, fp, fn = int(np.count_nonzero(p & r)), int(np.count_nonzero(p & ~r)), int(np.count_nonzero(~p & r))
        row = dict(cls=int(c), tp=tp, fp=fp, fn=fn, n_pred=tp + fp, n_ref=tp + fn)
        if tp + fp and tp + fn:
            a, b = surface_distances(p, r, spacing)
            row.update(status="ok", dice=2.0 * tp / (2 * tp + fp + fn), jaccard=tp / (tp + fp + fn),  # dc, jc
                       hd95=float(np.percentile(np.hstack((a, b)), 95)),
                       asd=float(a.mean()) if asd_kind == "surface" else average_hausdorff(p, r, spacing))
        elif not (tp + fp) and not (tp + fn):
            both = {"duomod": (1.0, 1.0, 0.0, 0.0), "decseg": (0.0, 0.0, np.nan, np.nan)}.get(policy, (np.nan,) * 4)
            row.update(status="both_empty", **dict(zip(("dice", "jaccard", "hd95", "asd"), both)))
        else:
            dist = {"penalty": diagonal, "exclude": np.nan, "zero": 0.0, "duomod": np.nan, "decseg": np.nan}[policy]
            row.update(status="pred_empty" if tp + fn else "ref_empty", dice=0.0, jaccard=0.0, hd95=dist, asd=dist)
        rows.append(row)
    return rows


SALIENCY = ("sm", "em", "wfm", "mae")


def saliency_metrics(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """The polyp toolbox's measures of one 2D binary prediction against its reference, from pysodmetrics (the
    Python port of the MATLAB evaluation PraNet and DEC-Seg run): S-measure (alpha 0.5), mean E-measure (over its
    256 thresholds, the toolbox's meanEm), weighted F-measure (beta 1) and MAE. The masks go in as 0/255 maps,
    the toolbox's PNG form."""
    import py_sod_metrics as sod

    p, r = (np.where(np.asarray(m, bool), 255, 0).astype(np.uint8) for m in (pred, ref))
    sm, em, wfm, mae = sod.Smeasure(), sod.Emeasure(), sod.WeightedFmeasure(), sod.MAE()
    for m in (sm, em, wfm, mae):
        m.step(pred=p, gt=r)
    return {"sm": float(sm.get_results()["sm"]), "em": float(np.mean(em.get_results()["em"]["curve"])),
            "wfm": float(wfm.get_results()["wfm"]), "mae": float(mae.get_results()["mae"])}
