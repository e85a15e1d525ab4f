"""``sslseg evaluate``: per case x class (or region) metrics of a prediction folder against the references."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from sslseg import SslsegError
from sslseg.data import prepared_info, split_cases
from sslseg.io import atomic_path, read_case, read_nifti
from sslseg.metrics import case_metrics, saliency_metrics
from sslseg.protocols import PROTOCOLS

__all__ = ["evaluate"]


def evaluate(pred_dir: Path, prepared: Path, out_csv: Path, split: str = "test", protocol: str = "strict",
             policy: str | None = None) -> list[dict]:
    """Write ``out_csv`` (one row per case x scored structure) and return its rows. Every case of ``split`` must
    have a prediction on the reference's grid (the original one: prepared cases keep their original label when
    preprocessing resampled or cropped them).

    Distances are in mm from the reference's spacing when the protocol says so and the dataset's source has a
    spacing (``unit`` says which); ``policy`` None takes the protocol's empty-mask policy.
    """
    proto = PROTOCOLS[protocol]
    policy = policy or proto.empty_policy
    info = prepared_info(prepared)
    groups = info.groups
    ids = split_cases(prepared, split)
    missing = [c for c in ids if not (Path(pred_dir) / f"{c}.nii.gz").is_file()]
    if missing:
        raise SslsegError(f"{pred_dir}: no prediction for {len(missing)} case(s): {', '.join(missing[:5])}")
    use_spacing = proto.spacing and info.spacing_known
    rows = []
    for cid in ids:
        ref = read_case(Path(prepared) / "cases" / f"{cid}.h5", image=False, original=True,
                        n_classes=info.n_classes)
        geom = ref.source.geom if ref.source is not None else ref.geom
        pred_path = Path(pred_dir) / f"{cid}.nii.gz"
        pred, pgeom = read_nifti(pred_path)
        _check_prediction(pred_path, pred, pgeom, ref.label_orig, geom, info.n_classes)
        if proto.saliency and pred.ndim != 2:
            raise SslsegError(f"{pred_path}: protocol {proto.name!r} scores 2D images (the polyp toolbox's "
                              f"measures); this prediction is {pred.ndim}D")
        spacing = geom.spacing_zyx if use_spacing else None
        members = {g: ids_ for g, (_, ids_) in groups.items()}
        for r in case_metrics(pred.astype(np.int64), ref.label_orig, groups, spacing, policy, members=members,
                              asd_kind=proto.asd):
            if proto.saliency:
                r.update(saliency_metrics(np.isin(pred, members[r["cls"]]), np.isin(ref.label_orig,
                                                                                    members[r["cls"]])))
            rows.append({"case": cid, "class_name": groups[r["cls"]][0], **r,
                         "unit": proto.unit(info.spacing_known), "protocol": proto.name, "policy": policy})
    with atomic_path(out_csv) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        out = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["case", "class_name"], lineterminator="\n")
        out.writeheader()
        out.writerows({k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()} for r in rows)
    return rows


def _check_prediction(path: Path, pred: np.ndarray, pgeom, ref: np.ndarray, geom, n_classes: int) -> None:
    if pred.shape != ref.shape:
        raise SslsegError(f"{path}: shape {pred.shape} != reference shape {ref.shape}")
    if not np.issubdtype(pred.dtype, np.integer):
        raise SslsegError(f"{path}: voxel type {pred.dtype}; a prediction is a label map of integers")
    if pred.size and (pred.min() < 0 or pred.max() >= n_classes):
        raise SslsegError(f"{path}: label values outside 0..{n_classes - 1} (min {pred.min()}, max {pred.max()})")
    if not pgeom.close_to(geom):
        raise SslsegError(f"{path}: geometry (spacing {pgeom.spacing}, origin {pgeom.origin}, direction "
                          f"{pgeom.direction}) differs from the reference's (spacing {geom.spacing}, origin "
                          f"{geom.origin}, direction {geom.direction})")
