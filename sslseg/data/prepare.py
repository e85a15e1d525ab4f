"""The shared raw (NIfTI, ``imagesTr/{case}_0000.nii.gz`` + ``labelsTr/{case}.nii.gz``) -> prepared path."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from sslseg.data import DatasetSpec, read_split
from sslseg.io import Case, atomic_path, check_case, read_nifti, write_case, write_json

__all__ = ["minmax", "ct_window", "prepare_nifti", "write_tables"]


def minmax(x: np.ndarray) -> np.ndarray:
    """Per-volume min-max to [0, 1] (SSL4MIS's ACDC preprocessing)."""
    lo, hi = float(x.min()), float(x.max())
    return ((x - lo) / (hi - lo if hi > lo else 1.0)).astype(np.float32)


def ct_window(lo: float, hi: float) -> Callable[[np.ndarray], np.ndarray]:
    def norm(x: np.ndarray) -> np.ndarray:
        return ((np.clip(x, lo, hi) - lo) / (hi - lo)).astype(np.float32)

    return norm


def _load_pair(raw: Path, case: str, spec: DatasetSpec) -> Case:
    img = read_nifti(raw / "imagesTr" / f"{case}_0000.nii.gz")
    lab_path = raw / "labelsTr" / f"{case}.nii.gz"
    img.label = read_nifti(lab_path).image
    check_case(img, lab_path, spec.n_classes)
    img.label = img.label.astype(np.uint8)
    return img


def prepare_nifti(spec: DatasetSpec, raw: Path, out: Path, normalise: Callable[[np.ndarray], np.ndarray]) -> None:
    """Prepare every case of the frozen splits; 2D datasets store training cases slice by slice."""
    cases_dir = out / "cases"
    rows = []
    tmp_dir = out / ".cases.tmp"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir(parents=True)
    for split in ("train", "val", "test"):
        for pid in read_split(spec.name, split):
            c = _load_pair(raw, pid, spec)
            c.image = normalise(c.image.astype(np.float32))
            if spec.dims == 2 and split == "train":
                for k in range(c.image.shape[0]):
                    cid = f"{pid}_slice_{k}"
                    write_case(tmp_dir / f"{cid}.h5", Case(c.image[k], c.label[k], c.spacing[:2], c.origin[:2]))
                    rows.append(dict(case=cid, patient=pid, split=split, shape=c.image[k].shape, spacing=c.spacing_zyx[1:]))
            else:
                write_case(tmp_dir / f"{pid}.h5", c)
                rows.append(dict(case=pid, patient=pid, split=split, shape=c.image.shape, spacing=c.spacing_zyx))
    write_tables(spec, out, rows, {"source": "NIfTI imagesTr/labelsTr", "dims": spec.dims})
    shutil.rmtree(cases_dir, ignore_errors=True)
    tmp_dir.rename(cases_dir)


def write_tables(spec: DatasetSpec, out: Path, rows: list[dict], extra: dict) -> None:
    """cases.csv (with labelled_{n} flags: the first n patients of train.list) and dataset.json."""
    df = pd.DataFrame(rows)
    train_patients = read_split(spec.name, "train")
    for n in spec.budgets:
        if f"labelled_{n}" in df:  # the dataset set its own flags (e.g. ACDC's first-N-slices rule)
            continue
        df[f"labelled_{n}"] = df["patient"].isin(train_patients[:n]) & (df["split"] == "train")
    df["shape"] = df["shape"].map(lambda s: "x".join(str(int(v)) for v in s))
    df["spacing"] = df["spacing"].map(lambda s: "x".join(f"{float(v):.6g}" for v in s))
    with atomic_path(out / "cases.csv") as tmp:
        df.to_csv(tmp, index=False)
    write_json(out / "dataset.json", {
        "name": spec.name,
        "classes": {str(k): v for k, v in spec.classes.items()},
        "tail": list(spec.tail),
        "dims": spec.dims,
        "modality": spec.modality,
        "intensity": spec.intensity,
        "budget_unit": spec.budget_unit,
        "budgets": list(spec.budgets),
        "mirror": spec.mirror,
        "spacing_convention": "mm, array axis order (z, y, x); h5 attrs 'spacing' are SimpleITK order (x, y, z)",
        **extra,
    })
