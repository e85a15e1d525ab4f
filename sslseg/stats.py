"""Aggregation over cases, classes and seeds, and paired tests against the benchmark's reference method.

* Per seed: per class, the mean over test cases (cases whose value is NaN under the empty policy are excluded and
  counted); "overall" = mean over all foreground classes, "tail" = over the dataset's tail classes, in the
  protocol's order (SSL4MIS/BCP: over volumes, then over classes; or over classes, then over volumes).
* Table cell: mean +- std over seeds (ddof = 1; one seed gives no std).
* Paired tests: per case, the class mean averaged over seeds, method vs reference, paired t-test (scipy
  ``ttest_rel``) and Wilcoxon signed-rank (``wilcoxon``, zero_method 'wilcox'); Holm correction
  (statsmodels ``multipletests(method='holm')``) across all comparisons of one metric in the benchmark.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sslseg import SslsegError

__all__ = ["METRICS", "HIGHER_BETTER", "load_runs", "load_wall_times", "seed_table", "cell_table", "case_means",
           "paired_tests"]

METRICS = ["dice", "jaccard", "hd95", "asd"]
HIGHER_BETTER = {"dice": True, "jaccard": True, "hd95": False, "asd": False}


COLUMNS = ["case", "cls", "class_name", "status", "unit", *METRICS]


def read_metrics(path: Path, expected: set[tuple[str, str]] | None = None) -> pd.DataFrame:
    """One run's metrics.csv; a file that is unreadable, lacks a column or (with ``expected``, the (case,
    structure) pairs the test split scores) lacks or repeats a row raises SslsegError naming it."""
    try:
        df = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise SslsegError(f"{path}: unreadable metrics table ({str(e).splitlines()[0]}); rerun `sslseg evaluate`")
    if missing := [c for c in COLUMNS if c not in df]:
        raise SslsegError(f"{path}: not a metrics table of `sslseg evaluate` (no column {', '.join(missing)})")
    if df[["case", "cls", "class_name", "status", "unit"]].isna().any(axis=None):  # a row cut short
        raise SslsegError(f"{path}: incomplete rows (a truncated file?); rerun `sslseg evaluate`")
    if expected is not None:
        got = list(zip(df["case"].astype(str), df["class_name"].astype(str)))
        lost = expected - set(got)
        if lost or len(got) != len(set(got)) or set(got) - expected:
            what = (f"{len(lost)} of its {len(expected)} test case x structure rows are missing (e.g. "
                    f"{sorted(lost)[0]})" if lost else "its rows are not one per test case x structure")
            raise SslsegError(f"{path}: {what}; a truncated or foreign file? rerun `sslseg evaluate`")
    if df[METRICS].dtypes.map(lambda t: not np.issubdtype(t, np.number)).any():
        raise SslsegError(f"{path}: non-numeric metric values; rerun `sslseg evaluate`")
    return df


def load_runs(results: Path, bench: dict, expected: set[tuple[str, str]] | None = None) -> pd.DataFrame:
    """All ``{method}/l{budget}/seed{seed}/metrics.csv`` of a benchmark as one long table; all must exist and be
    complete (``read_metrics``)."""
    frames, missing = [], []
    for method in bench["methods"]:
        for budget in bench["labels"]:
            for seed in bench["seeds"]:
                path = Path(results) / method / f"l{budget}" / f"seed{seed}" / "metrics.csv"
                if not path.is_file():
                    missing.append(str(path))
                    continue
                df = read_metrics(path, expected)
                df.insert(0, "seed", seed)
                df.insert(0, "budget", budget)
                df.insert(0, "method", method)
                frames.append(df)
    if missing:
        raise SslsegError(f"missing metrics for {len(missing)} run(s): {', '.join(missing[:3])}")
    return pd.concat(frames, ignore_index=True)


def load_wall_times(results: Path, bench: dict) -> pd.DataFrame:
    """Training wall time (s) and selected iteration of every run, from its provenance.json."""
    import json

    rows = []
    for method in bench["methods"]:
        for budget in bench["labels"]:
            for seed in bench["seeds"]:
                path = Path(results) / method / f"l{budget}" / f"seed{seed}" / "provenance.json"
                if not path.is_file():
                    raise SslsegError(f"{path}: missing (train the run first)")
                prov = json.loads(path.read_text(encoding="utf-8"))
                rows.append(dict(method=method, budget=budget, seed=seed, wall_time_s=prov["wall_time_s"],
                                 selected_iteration=prov["selected_iteration"], device=prov["device"]))
    return pd.DataFrame(rows)


def seed_table(per_case: pd.DataFrame, tail: list[int], aggregation: str = "cases-then-classes") -> pd.DataFrame:
    """Per method x budget x seed x group (a class name, 'overall', 'tail'): metric means and case counts.

    ``aggregation`` (the protocol's) orders the two means of 'overall' and 'tail': ``cases-then-classes`` averages
    each class over cases, then the class means; ``classes-then-cases`` averages each case over its classes, then
    over cases. NaN values (excluded under the empty policy) are skipped by either mean and counted."""
    keys = ["method", "budget", "seed"]
    g = per_case.groupby(keys + ["cls", "class_name"], sort=False)
    per_class = g[METRICS].mean()  # pandas skips NaN: excluded cases
    per_class["n_cases"] = g.size()
    per_class["n_excluded"] = g["hd95"].apply(lambda s: int(s.isna().sum()))
    per_class["n_both_empty"] = g["status"].apply(lambda s: int((s == "both_empty").sum()))
    per_class = per_class.reset_index()
    groups = [per_class.assign(group=per_class["class_name"])]
    counts = {"n_cases": "max", "n_excluded": "sum", "n_both_empty": "sum"}
    for name, cls in (("overall", None), ("tail", tail)):
        sel = per_class if cls is None else per_class[per_class["cls"].isin(cls)]
        if not len(sel):
            continue
        agg = sel.groupby(keys, sort=False).agg({**{m: "mean" for m in METRICS}, **counts}).reset_index()
        if aggregation == "classes-then-cases":
            rows = per_case if cls is None else per_case[per_case["cls"].isin(cls)]
            case_means = rows.groupby(keys + ["case"], sort=False)[METRICS].mean()
            agg[METRICS] = case_means.groupby(keys, sort=False).mean().reindex(
                pd.MultiIndex.from_frame(agg[keys])).to_numpy()
        groups.append(agg.assign(group=name, cls=-1 if name == "overall" else -2, class_name=name))
    return pd.concat(groups, ignore_index=True)


def cell_table(seeds: pd.DataFrame) -> pd.DataFrame:
    """Mean and std (ddof=1) over seeds per method x budget x group x metric."""
    g = seeds.groupby(["method", "budget", "group"], sort=False)
    out = g[METRICS].agg(["mean", lambda s: s.std(ddof=1) if len(s) > 1 else np.nan])
    out.columns = [f"{m}_{'mean' if s == 'mean' else 'std'}" for m, s in out.columns]
    out["n_seeds"] = g.size()
    out["n_cases"] = g["n_cases"].max()
    out["n_excluded"] = g["n_excluded"].sum()
    return out.reset_index()


def case_means(per_case: pd.DataFrame) -> pd.DataFrame:
    """Per method x budget x case: the class mean of each metric, averaged over seeds (what the tests compare)."""
    case = per_case.groupby(["method", "budget", "seed", "case"])[METRICS].mean()
    return case.groupby(["method", "budget", "case"])[METRICS].mean().reset_index()


def paired_tests(per_case: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Each method vs ``reference`` per budget and metric on per-case class means averaged over seeds."""
    from scipy import stats as sps  # the tests' modules (0.6 s to import) only where they run
    from statsmodels.stats.multitest import multipletests

    case = case_means(per_case)
    rows = []
    for (method, budget), sub in case.groupby(["method", "budget"], sort=False):
        if method == reference:
            continue
        ref = case[(case["method"] == reference) & (case["budget"] == budget)]
        both = sub.merge(ref, on="case", suffixes=("", "_ref"))
        for m in METRICS:
            pair = both[[m, f"{m}_ref"]].dropna()
            a, b = pair[m].to_numpy(), pair[f"{m}_ref"].to_numpy()
            diff = np.round(a - b, 12)
            t_p = float(sps.ttest_rel(a, b).pvalue) if len(a) > 1 and np.any(diff) else np.nan
            w_p = float(sps.wilcoxon(diff).pvalue) if len(a) > 1 and np.any(diff) else np.nan
            rows.append(dict(method=method, reference=reference, budget=budget, metric=m, n=len(a),
                             n_excluded=len(both) - len(a), mean=float(a.mean()) if len(a) else np.nan,
                             mean_ref=float(b.mean()) if len(a) else np.nan,
                             mean_diff=float(diff.mean()) if len(a) else np.nan, p_ttest=t_p, p_wilcoxon=w_p))
    out = pd.DataFrame(rows, columns=["method", "reference", "budget", "metric", "n", "n_excluded", "mean",
                                      "mean_ref", "mean_diff", "p_ttest", "p_wilcoxon"])
    for col in ("p_ttest", "p_wilcoxon"):
        out[f"{col}_holm"] = np.nan
        for m in METRICS:
            sel = (out["metric"] == m) & out[col].notna()
            if sel.any():
                out.loc[sel, f"{col}_holm"] = multipletests(out.loc[sel, col], method="holm")[1]
    return out
