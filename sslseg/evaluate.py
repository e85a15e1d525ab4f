"""``sslseg evaluate``: per case x class metrics of a prediction folder against the prepared references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sslseg import SslsegError
from sslseg.data.loader import load_prepared
from sslseg.io import atomic_path, read_case, read_nifti
from sslseg.metrics import case_metrics

__all__ = ["evaluate"]


def evaluate(pred_dir: Path, prepared: Path, out_csv: Path, split: str = "test", protocol: str = "strict",
             policy: str = "penalty") -> pd.DataFrame:
    """Write ``out_csv`` (one row per case x class). Every case of ``split`` must have a prediction.

    ``strict`` passes the stored spacing (mm, array order) to the metrics; ``paper`` passes none (voxel units), and
    so does ``strict`` when the dataset's source has no spacing (``spacing_known: false``), saying so in ``unit``.
    """
    meta, cases = load_prepared(prepared)
    classes = {int(k): v for k, v in meta["classes"].items()}
    ids = cases.loc[cases["split"] == split, "case"].tolist()
    spacing_known = meta.get("spacing_known", True)
    missing = [c for c in ids if not (Path(pred_dir) / f"{c}.nii.gz").is_file()]
    if missing:
        raise SslsegError(f"{pred_dir}: no prediction for {len(missing)} case(s): {', '.join(missing[:5])}")
    rows = []
    for cid in ids:
        ref = read_case(Path(prepared) / "cases" / f"{cid}.h5", n_classes=len(classes) + 1)
        pred_path = Path(pred_dir) / f"{cid}.nii.gz"
        pred = read_nifti(pred_path)
        if pred.image.shape != ref.label.shape:
            raise SslsegError(f"{pred_path}: shape {pred.image.shape} != reference shape {ref.label.shape}")
        if not np.allclose(pred.spacing, ref.spacing, rtol=1e-4):
            raise SslsegError(f"{pred_path}: spacing {pred.spacing} != reference spacing {ref.spacing}")
        spacing = ref.spacing_zyx if protocol == "strict" and spacing_known else None
        for r in case_metrics(pred.image.astype(np.int64), ref.label, classes, spacing, policy):
            rows.append({"case": cid, "class_name": classes[r["cls"]], **r})
    df = pd.DataFrame(rows)
    df["unit"] = "mm" if protocol == "strict" and spacing_known else "voxel" if protocol == "paper" else \
        "voxel (source has no spacing)"
    df["protocol"], df["policy"] = protocol, policy
    with atomic_path(out_csv) as tmp:
        df.to_csv(tmp, index=False)
    return df
