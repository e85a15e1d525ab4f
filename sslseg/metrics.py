"""Segmentation metrics with voxel spacing, identical to medpy 0.5.2 ``dc``, ``jc``, ``hd95``, ``asd``.

Definitions (medpy 0.5.2, ``medpy.metric.binary``):
* surface of a mask = mask XOR its binary erosion (connectivity 1; voxels on the array edge count as surface);
* distances = Euclidean distance transform (with ``spacing``) from one surface to the other;
* ``hd95`` = 95th percentile of the distances of *both* directions pooled; ``asd`` = mean distance from the
  prediction's surface to the reference's (directed).
Both masks are cropped to the bounding box of their union first (with the same slice), which leaves every distance
unchanged and saves most of the work.

Empty masks: medpy's dc/jc intend 1.0 when both are empty (under numpy 2 its dc gives NaN with a warning;
``dc``/``jc`` here return 1.0, and ``case_metrics`` never scores two empty masks with them) and medpy raises for distances if either is empty. Here
each case x class gets a ``status`` (``ok``, ``both_empty``, ``pred_empty``, ``ref_empty``) and the values follow
a named policy (see ``EMPTY_POLICIES``); nothing is silently 0.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from scipy import ndimage

__all__ = ["dc", "jc", "hd95", "asd", "surface_distances", "dice_per_class", "case_metrics", "EMPTY_POLICIES"]

EMPTY_POLICIES = {
    "penalty": "one-sided empty: Dice/Jaccard 0, HD95/ASD = image diagonal; both empty: excluded and counted",
    "exclude": "one-sided empty: Dice/Jaccard 0, HD95/ASD NaN (excluded and counted); both empty: excluded and counted",
    "zero": "one-sided empty: all four metrics 0 (BCP test script; flatters HD95/ASD); both empty: excluded and counted",
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


def _crop(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    box = ndimage.find_objects((a | b).astype(np.uint8))[0]
    return a[box], b[box]


def _surface(mask: np.ndarray) -> np.ndarray:
    fp = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask ^ ndimage.binary_erosion(mask, structure=fp, iterations=1)


def surface_distances(result: np.ndarray, reference: np.ndarray,
                      spacing: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Distances result->reference and reference->result surfaces (both masks must be non-empty)."""
    result = np.atleast_1d(np.asarray(result, bool))
    reference = np.atleast_1d(np.asarray(reference, bool))
    if not result.any() or not reference.any():
        raise ValueError("surface distances need two non-empty masks")
    if spacing is not None and len(spacing) != result.ndim:
        raise ValueError(f"spacing {tuple(spacing)} has {len(spacing)} values for a {result.ndim}D mask")
    result, reference = _crop(result, reference)
    s_res, s_ref = _surface(result), _surface(reference)
    sampling = None if spacing is None else [float(s) for s in spacing]
    d_to_ref = ndimage.distance_transform_edt(~s_ref, sampling=sampling)
    d_to_res = ndimage.distance_transform_edt(~s_res, sampling=sampling)
    return d_to_ref[s_res], d_to_res[s_ref]


def hd95(result: np.ndarray, reference: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    a, b = surface_distances(result, reference, spacing)
    return float(np.percentile(np.hstack((a, b)), 95))


def asd(result: np.ndarray, reference: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    return float(surface_distances(result, reference, spacing)[0].mean())


def dice_per_class(pred: np.ndarray, ref: np.ndarray, classes: Iterable[int]) -> list[float]:
    """Hard Dice per class; NaN when both are empty (for validation means)."""
    out = []
    for c in classes:
        p, r = pred == c, ref == c
        s = np.count_nonzero(p) + np.count_nonzero(r)
        out.append(2.0 * np.count_nonzero(p & r) / s if s else np.nan)
    return out


def case_metrics(pred: np.ndarray, ref: np.ndarray, classes: Iterable[int], spacing: Sequence[float] | None,
                 policy: str = "penalty", members: dict[int, Sequence[int]] | None = None) -> list[dict]:
    """One row per class: dice, jaccard, hd95, asd, tp/fp/fn, sizes and the empty-mask status. ``members`` makes a
    "class" a region, the union of several label ids (e.g. BraTS whole tumour = labels 1, 2, 3)."""
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} != reference shape {ref.shape}")
    if policy not in EMPTY_POLICIES:
        raise ValueError(f"unknown empty policy {policy!r} (known: {', '.join(EMPTY_POLICIES)})")
    sp = np.ones(pred.ndim) if spacing is None else np.asarray(spacing, float)
    diagonal = float(np.sqrt(np.sum((np.asarray(pred.shape) * sp) ** 2)))
    rows = []
    for c in classes:
        if members is None:
            p, r = pred == c, ref == c
        else:
            p, r = np.isin(pred, members[c]), np.isin(ref, members[c])
        tp, fp, fn = int(np.count_nonzero(p & r)), int(np.count_nonzero(p & ~r)), int(np.count_nonzero(~p & r))
        row = dict(cls=int(c), tp=tp, fp=fp, fn=fn, n_pred=tp + fp, n_ref=tp + fn)
        if tp + fp and tp + fn:
            a, b = surface_distances(p, r, spacing)
            row.update(status="ok", dice=dc(p, r), jaccard=jc(p, r), hd95=float(np.percentile(np.hstack((a, b)), 95)),
                       asd=float(a.mean()))
        elif not (tp + fp) and not (tp + fn):
            row.update(status="both_empty", dice=np.nan, jaccard=np.nan, hd95=np.nan, asd=np.nan)
        else:
            dist = {"penalty": diagonal, "exclude": np.nan, "zero": 0.0}[policy]
            row.update(status="pred_empty" if tp + fn else "ref_empty", dice=0.0, jaccard=0.0, hd95=dist, asd=dist)
        rows.append(row)
    return rows
