"""Paper layouts: a protocol's own summary files, written by ``sslseg aggregate`` into ``results/{bench}/paper/``
beside the project's tables (which every benchmark gets).

``duomod`` -- DuoMod-Net's ``aggregate_amos_ready.py``, per method and budget:
* ``{method}_l{budget}_aggregated_metrics.csv``: per test case, the mean over the foreground classes and over the
  tail classes of Dice and ASD within each seed (NaN skipped), then the mean over seeds (the p-value input);
* ``{method}_l{budget}_summary_results.txt``: per class, Dice (x 100, 2 decimals) and ASD (mm, 3 decimals) as the
  mean over seeds of each seed's case mean, +- their standard deviation with ddof 0 (numpy's ``nanstd``, as the
  reference); then "Average (FG)" and "Average (tail)": per seed the mean over cases of each case's class mean.
  Unlike the reference, each line also counts the organs missed (prediction empty, no ASD) and the spurious ones
  (reference empty), which its nan-means leave out silently.

``decseg`` -- DEC-Seg's tables (its ``MyTest.py`` and the polyp toolbox it runs), per test set and over all test
images, per method and budget: mean Dice and IoU (0 when either mask is empty), S-measure, mean E-measure, weighted
F-measure and MAE, each the mean over images within a seed, then mean +- std over seeds (ddof 1):
``{method}_l{budget}_results.txt`` and, for every run together, ``test_sets.csv``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sslseg.data import DatasetInfo
from sslseg.io import atomic_path

__all__ = ["LAYOUTS", "write_layout"]


def _mean_std(values: pd.Series) -> tuple[float, float]:
    v = values.to_numpy(float)
    return (float(np.nanmean(v)), float(np.nanstd(v))) if np.isfinite(v).any() else (np.nan, np.nan)


def _line(name: str, rows: pd.DataFrame, per_seed_mean) -> str:
    dice, asd = _mean_std(per_seed_mean(rows, "dice") * 100), _mean_std(per_seed_mean(rows, "asd"))
    missed, spurious = int((rows["status"] == "pred_empty").sum()), int((rows["status"] == "ref_empty").sum())
    return (f"{name:<18} {dice[0]:6.2f} +- {dice[1]:5.2f}   {asd[0]:8.3f} +- {asd[1]:7.3f}   "
            f"{missed:6d} {spurious:8d}")


def _duomod(per_case: pd.DataFrame, meta: DatasetInfo, out: Path) -> None:
    names = {c: n for c, (n, _) in meta.groups.items()}
    tail = list(meta.tail)

    def class_mean(rows, metric):  # per seed: the mean over cases
        return rows.groupby("seed")[metric].mean()

    def case_class_mean(rows, metric):  # per seed: the mean over cases of each case's mean over classes
        return rows.groupby(["seed", "case"])[metric].mean().groupby("seed").mean()

    for (method, budget), runs in per_case.groupby(["method", "budget"], sort=False):
        cols = {}
        for label, rows in (("FG", runs), ("Tail", runs[runs["cls"].isin(tail)])):
            per_seed = rows.groupby(["seed", "case"])[["dice", "asd"]].mean()
            over_seeds = per_seed.groupby("case").mean()
            cols[f"Avg_{label}_Dice"], cols[f"Avg_{label}_ASD"] = over_seeds["dice"], over_seeds["asd"]
        table = pd.DataFrame(cols).rename_axis("Filename").reset_index()
        with atomic_path(out / f"{method}_l{budget}_aggregated_metrics.csv") as tmp:
            table.to_csv(tmp, index=False)
        seeds = sorted(runs["seed"].unique())
        lines = [f"{method}, {budget} labelled, seeds {', '.join(map(str, seeds))} (mean +- std over seeds, ddof 0)",
                 f"{'class':<18} {'Dice (%)':>15}   {'ASD (mm)':>19}   {'missed':>6} {'spurious':>8}"]
        for c in sorted(names):
            lines.append(_line(names[c], runs[runs["cls"] == c], class_mean))
        lines.append(_line("Average (FG)", runs, case_class_mean))
        if tail:
            lines.append(_line("Average (tail)", runs[runs["cls"].isin(tail)], case_class_mean))
        with atomic_path(out / f"{method}_l{budget}_summary_results.txt") as tmp:
            Path(tmp).write_text("\n".join(lines) + "\n", encoding="utf-8")


DECSEG_METRICS = {"dice": "mDice", "jaccard": "mIoU", "sm": "S_alpha", "em": "mean E_phi", "wfm": "F_w",
                  "mae": "MAE"}


def _decseg(per_case: pd.DataFrame, meta: DatasetInfo, out: Path) -> None:
    rows = per_case[per_case["cls"] == min(meta.groups)]  # the lesion (one foreground class)
    sets = [("all", rows)]
    if "subset" in rows:
        sets = [(str(name), sub) for name, sub in rows.groupby("subset", sort=False)] + sets
    metrics = [m for m in DECSEG_METRICS if m in rows]
    table = []
    for (method, budget), _ in rows.groupby(["method", "budget"], sort=False):
        lines = [f"{method}, {budget} {meta.budget_unit}: mean over images per seed, then mean +- std over seeds "
                 "(ddof 1)", f"{'test set':<20} {'images':>6} " + " ".join(f"{DECSEG_METRICS[m]:>15}"
                                                                           for m in metrics)]
        for name, sub in sets:
            run = sub[(sub["method"] == method) & (sub["budget"] == budget)]
            per_seed = run.groupby("seed")[metrics].mean()
            n = run["case"].nunique()
            cells = []
            for m in metrics:
                mean, std = float(per_seed[m].mean()), float(per_seed[m].std(ddof=1)) if len(per_seed) > 1 else np.nan
                table.append(dict(method=method, budget=budget, subset=name, metric=m, mean=mean, std=std,
                                  n_images=n, n_seeds=len(per_seed)))
                cells.append(f"{mean:.4f} +- {std:.4f}" if np.isfinite(std) else f"{mean:.4f}")
            lines.append(f"{name:<20} {n:>6} " + " ".join(f"{c:>15}" for c in cells))
        with atomic_path(out / f"{method}_l{budget}_results.txt") as tmp:
            Path(tmp).write_text("\n".join(lines) + "\n", encoding="utf-8")
    with atomic_path(out / "test_sets.csv") as tmp:
        pd.DataFrame(table).to_csv(tmp, index=False)


LAYOUTS = {"duomod": _duomod, "decseg": _decseg}


def write_layout(layout: str | None, per_case: pd.DataFrame, meta: DatasetInfo, out: Path) -> None:
    """The protocol's layout into ``out`` (created); a note where the protocol has none."""
    out.mkdir(parents=True, exist_ok=True)
    if layout is None:
        with atomic_path(out / "README.txt") as tmp:
            Path(tmp).write_text("This benchmark's protocol has no paper layout of its own; see ../summary.txt.\n",
                                 encoding="utf-8")
        return
    LAYOUTS[layout](per_case, meta, out)
