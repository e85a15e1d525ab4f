"""``sslseg aggregate``: summary.txt/json, per_case.csv, pvalues.csv, tables.xlsx, table.md, table.tex,
tables.html and paper/ (the protocol's own layout, sslseg.paper_layouts).

per_case.csv and summary.json are the canonical machine-readable outputs; the rest are views of them.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import pandas as pd

from sslseg import SslsegError
from sslseg.data import DatasetInfo, load_prepared
from sslseg.io import atomic_path, write_json
from sslseg.metrics import EMPTY_POLICIES
from sslseg.protocols import PROTOCOLS
from sslseg.stats import HIGHER_BETTER, METRICS, cell_table, load_runs, load_wall_times, paired_tests, seed_table

__all__ = ["aggregate", "mark", "metric_scale", "ALPHA"]

LABELS = {"dice": "Dice (%)", "jaccard": "Jaccard (%)", "hd95": "95HD", "asd": "ASD"}
ALPHA = 0.05


def metric_scale(metric: str) -> float:
    """Factor from stored values to the tables' units: Dice and Jaccard in %."""
    return 100.0 if metric in ("dice", "jaccard") else 1.0


def mark(p_wilcoxon_holm: float, mean_diff: float, metric: str) -> str:
    """The tables' significance mark against the reference: '*' better, '†' worse (Holm-corrected Wilcoxon
    p < ALPHA), else ''."""
    if not p_wilcoxon_holm < ALPHA:  # NaN too: no test
        return ""
    return "*" if (mean_diff > 0) == HIGHER_BETTER[metric] else "†"


def _fmt(mean: float, std: float, metric: str) -> str:
    s = metric_scale(metric)
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    return f"{mean * s:.2f} ± {std * s:.2f}" if not math.isnan(std) else f"{mean * s:.2f}"


def _budget(n: int, unit: str) -> str:
    """"1 labelled patient", "3 labelled patients"."""
    return f"{n} {unit[:-1] if n == 1 and unit.endswith('s') else unit}"


def wilcoxon_floor(n_cases: int, n_tests: int) -> float:
    """The smallest Holm-corrected p-value a two-sided Wilcoxon signed-rank test of ``n_cases`` pairs can reach
    among ``n_tests`` comparisons: all differences of one sign give p = 2 / 2^n exactly, and Holm multiplies the
    smallest p by the number of comparisons."""
    return min(1.0, n_tests * 2.0 / 2.0 ** n_cases)


def _footer(spec: dict, unit: str, n_cases: int | None = None, n_tests: int | None = None) -> list[str]:
    proto = PROTOCOLS[spec["protocol"]]
    order = {"cases-then-classes": "over test cases per class, then over classes",
             "classes-then-cases": "over classes per test case, then over cases"}[proto.aggregation]
    return [
        f"Protocol: {proto.name} ({proto.summary}); distances in {unit}. Metrics: medpy 0.5.2 definitions (dc, jc; "
        "hd95 = 95th percentile of both directions' surface distances pooled; asd directed prediction->reference;"
        " connectivity 1).",
        f"Empty masks: policy '{spec['empty_policy']}': {EMPTY_POLICIES[spec['empty_policy']]}.",
        f"Model selection: {spec['selection']}"
        + (" (best mean validation Dice)" if spec["selection"] == "val" else " (final iteration)")
        + "; the test split is never used for selection.",
        f"Cells: mean ± std over seeds (ddof=1) of per-seed means ({order}).",
        "Tests: per-case class mean averaged over seeds, method vs reference, paired t-test and Wilcoxon signed-rank,"
        f" Holm-corrected per metric; * marks Holm-corrected Wilcoxon p < {ALPHA} with the"
        " method better than the reference, † with it worse.",
    ] + _too_few(n_cases, n_tests)


def _too_few(n_cases: int | None, n_tests: int | None) -> list[str]:
    if not n_cases or not n_tests or wilcoxon_floor(n_cases, n_tests) < ALPHA:
        return []
    return [f"Note: with {n_cases} test cases and {n_tests} comparison(s) per metric, the smallest Holm-corrected "
            f"Wilcoxon p-value possible is {wilcoxon_floor(n_cases, n_tests):.3g} >= {ALPHA}: no difference can be "
            "marked significant here, whatever the results."]


def _summary_txt(cells: pd.DataFrame, walls: pd.DataFrame, bench: dict, name: str, meta: DatasetInfo,
                 unit: str, notes: list[str]) -> str:
    classes = [n for n, _ in meta.groups.values()]
    tail = [meta.groups[t][0] for t in meta.tail]
    out = [f"Benchmark {name}: dataset {meta.name}, methods {', '.join(bench['methods'])}, "
           f"seeds {bench['seeds']}, budgets {bench['labels']} ({meta.budget_unit})",
           f"Tail classes: {', '.join(tail) or 'none'}", ""]
    header = f"{'':14s}" + "".join(f"{LABELS[m] + (' ' + unit if m in ('hd95', 'asd') else ''):>22s}" for m in METRICS)
    for budget in bench["labels"]:
        for method in bench["methods"]:
            sub = cells[(cells["method"] == method) & (cells["budget"] == budget)].set_index("group")
            n_seeds = int(sub["n_seeds"].max())
            out += [f"== {method} | {_budget(budget, meta.budget_unit)} | {n_seeds} seed(s) ==", header]
            for group in classes + ["overall"] + (["tail"] if tail else []):
                if group not in sub.index:
                    continue
                r = sub.loc[group]
                out.append(f"{group:14s}" + "".join(f"{_fmt(r[m + '_mean'], r[m + '_std'], m):>22s}" for m in METRICS)
                           + (f"   ({int(r['n_excluded'])} excluded)" if r["n_excluded"] else ""))
            out.append("")
    out.append("Training wall time per run (mean over seeds, device):")
    for (method, budget), w in walls.groupby(["method", "budget"], sort=False):
        out.append(f"  {method:14s} {budget:>4}: {w['wall_time_s'].mean() / 60:7.1f} min  ({', '.join(sorted(set(w['device'])))})")
    out.append("")
    return "\n".join(out + notes) + "\n"


def _paper_rows(cells: pd.DataFrame, pvals: pd.DataFrame, bench: dict, meta: dict) -> list[list[str]]:
    """Rows of the paper table with (text, bold) cells: methods x budgets, overall metrics."""
    overall = cells[cells["group"] == "overall"]
    rows = []
    for budget in bench["labels"]:
        sub = overall[overall["budget"] == budget].set_index("method")
        best = {m: (sub[m + "_mean"].idxmax() if HIGHER_BETTER[m] else sub[m + "_mean"].idxmin()) for m in METRICS}
        for method in bench["methods"]:
            r = sub.loc[method]
            cells_ = []
            for m in METRICS:
                p = pvals[(pvals["method"] == method) & (pvals["budget"] == budget) & (pvals["metric"] == m)]
                star = mark(p["p_wilcoxon_holm"].iloc[0], p["mean_diff"].iloc[0], m) if len(p) else ""
                cells_.append((_fmt(r[m + "_mean"], r[m + "_std"], m) + star, method == best[m]))
            rows.append([(method, False), (f"{budget}", False)] + cells_)
    return rows


def _table_md(rows, meta, unit, notes) -> str:
    head = ["Method", meta.budget_unit.capitalize()] + [
        LABELS[m] + (f" ({unit})" if m in ("hd95", "asd") else "") for m in METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(f"**{t}**" if b else t for t, b in r) + " |")
    return "\n".join(lines + [""] + [f"{x}  " for x in notes]) + "\n"


def _table_tex(rows, meta, unit, notes) -> str:
    esc = lambda s: (s.replace("_", r"\_").replace("±", r"$\pm$").replace("*", r"$^{*}$")  # noqa: E731
                     .replace("†", r"$^{\dagger}$"))
    head = ["Method", meta.budget_unit.capitalize()] + [
        LABELS[m].replace("%", r"\%") + (f" ({unit})" if m in ("hd95", "asd") else "") for m in METRICS]
    lines = [r"% needs \usepackage{booktabs} (\toprule, \midrule, \bottomrule); plain LaTeX otherwise",
             r"\begin{tabular}{ll" + "c" * len(METRICS) + "}", r"\toprule", " & ".join(head) + r" \\", r"\midrule"]
    last = None
    for r in rows:
        if last is not None and r[1][0] != last:
            lines.append(r"\midrule")
        last = r[1][0]
        lines.append(" & ".join(rf"\textbf{{{esc(t)}}}" if b else esc(t) for t, b in r) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", "% " + "\n% ".join(notes)]
    return "\n".join(lines) + "\n"


_CSS = ("body{font-family:sans-serif;font-size:13px;margin:12px}table{border-collapse:collapse;margin:6px 0 14px}"
        "th,td{border-top:1px solid #ccc;border-bottom:1px solid #ccc;padding:3px 9px;text-align:right}"
        "th:first-child,td:first-child{text-align:left}th{background:#f2f2f2}p.note{color:#444;margin:2px 0}")


def _html_table(head: list[str], rows: list[list[tuple[str, bool]]]) -> str:
    cell = lambda t, b: f"<td>{'<b>' if b else ''}{html.escape(t)}{'</b>' if b else ''}</td>"  # noqa: E731
    return ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(cell(t, b) for t, b in r) + "</tr>" for r in rows) + "</table>")


def _tables_html(title: str, rows, cells: pd.DataFrame, pvals: pd.DataFrame, walls: pd.DataFrame, bench: dict,
                 meta: DatasetInfo, unit: str, notes: list[str]) -> str:
    """One page for reading: the paper table, Dice per class, the p-values, wall times and the protocol notes."""
    metric_head = [LABELS[m] + (f" ({unit})" if m in ("hd95", "asd") else "") for m in METRICS]
    groups = [n for n, _ in meta.groups.values()] + (["tail"] if meta.tail else []) + ["overall"]
    per_class = []
    for budget in bench["labels"]:
        for method in bench["methods"]:
            sub = cells[(cells["method"] == method) & (cells["budget"] == budget)].set_index("group")
            per_class.append([(method, False), (str(budget), False)] + [
                (_fmt(sub.at[g, "dice_mean"], sub.at[g, "dice_std"], "dice") if g in sub.index else "n/a", False)
                for g in groups])
    tests = [[(r.method, False), (str(r.budget), False), (LABELS[r.metric], False),
              (f"{r.mean_diff * metric_scale(r.metric):+.2f}", False),
              (f"{r.p_wilcoxon_holm:.3g}", r.p_wilcoxon_holm < ALPHA), (f"{r.p_ttest_holm:.3g}", False),
              (str(r.n), False)] for r in pvals.itertuples()]
    wall = walls.groupby(["method", "budget"], sort=False).agg(minutes=("wall_time_s", "mean"),
                                                                 device=("device", lambda d: ", ".join(sorted(set(d)))))
    wall_rows = [[(m, False), (str(b), False), (f"{r.minutes / 60:.1f}", False), (r.device, False)]
                 for (m, b), r in wall.iterrows()]
    unit_head = meta.budget_unit.capitalize()
    parts = [f"<h2>{html.escape(title)}</h2>",
             "<h3>Overall (mean ± std over seeds; best in bold)</h3>",
             _html_table(["Method", unit_head] + metric_head, rows),
             "<h3>Dice (%) per class</h3>", _html_table(["Method", unit_head] + groups, per_class),
             f"<h3>Paired tests against {html.escape(bench['reference'])} (Holm-corrected; bold: Wilcoxon p &lt; "
             f"{ALPHA})</h3>",
             _html_table(["Method", unit_head, "Metric", "Mean difference", "p Wilcoxon (Holm)", "p t-test (Holm)",
                          "Cases"], tests),
             "<h3>Training wall time per run (mean over seeds)</h3>",
             _html_table(["Method", unit_head, "Minutes", "Device"], wall_rows),
             "<h3>How to read these tables</h3>"] + [f'<p class="note">{html.escape(n)}</p>' for n in notes]
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>" + "\n".join(parts) + "</body></html>\n")


def _readable(df: pd.DataFrame, unit: str) -> pd.DataFrame:
    """A table for people: Dice and Jaccard in %, distance columns named with their unit."""
    df = df.copy()
    for col in list(df.columns):
        metric = col.split("_")[0]
        if metric not in METRICS or col not in (metric, f"{metric}_mean", f"{metric}_std"):
            continue
        if metric_scale(metric) != 1:
            df[col] = df[col] * metric_scale(metric)
        df = df.rename(columns={col: f"{col} ({'%' if metric_scale(metric) != 1 else unit})"})
    return df


def _write_xlsx(path: Path, sheets: dict[str, pd.DataFrame], title: str) -> None:
    """One sheet per view: a title row, the header frozen below it, fixed decimals (p-values in scientific
    notation), columns as wide as their content. Saved by ``close`` only, so an interruption leaves no workbook."""
    xw = pd.ExcelWriter(path, engine="openpyxl")
    for name, df in sheets.items():
        df.to_excel(xw, sheet_name=name, index=False, startrow=1)
        ws = xw.sheets[name]
        ws.cell(row=1, column=1, value=f"{title} -- {name.replace('_', ' ')}")
        ws.freeze_panes = "A3"
        for j, col in enumerate(df.columns, start=1):
            fmt = "0.00E+00" if col.startswith("p_") else "0.00"
            if pd.api.types.is_float_dtype(df[col]):
                for row in ws.iter_rows(min_row=3, min_col=j, max_col=j):
                    row[0].number_format = fmt
            width = max([len(str(col))] + [len(f"{v:.2f}" if isinstance(v, float) else str(v)) for v in df[col]])
            ws.column_dimensions[ws.cell(row=2, column=j).column_letter].width = min(width + 2, 60)
    xw.close()


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def aggregate(bench: dict, results: Path, prepared: Path, out: Path | None = None) -> None:
    """Tables of benchmark ``bench`` (``sslseg.config.report_spec``: name, methods, labels, seeds, reference,
    protocol, empty_policy, selection) from the runs under ``results``."""
    name = bench["name"]
    results, out = Path(results), Path(out or results)
    meta, cases = load_prepared(prepared)
    if bench.get("dataset", meta.name) != meta.name:
        raise SslsegError(f"{prepared}: holds dataset {meta.name!r}; benchmark {name!r} is on {bench['dataset']!r}")
    tests = cases.loc[cases["split"] == "test", "case"].astype(str)
    per_case = load_runs(results, bench, {(c, n) for c in tests for n, _ in meta.groups.values()})
    if "subset" in cases:  # named subsets (the polyp test sets): per_case.csv says which case is in which
        sets = cases.set_index(cases["case"].astype(str))["subset"]
        per_case.insert(per_case.columns.get_loc("case") + 1, "subset", per_case["case"].astype(str).map(sets))
    unit = str(per_case["unit"].iloc[0])
    seeds = seed_table(per_case, list(meta.tail), PROTOCOLS[bench["protocol"]].aggregation)
    cells = cell_table(seeds)
    pvals = paired_tests(per_case, bench["reference"])
    walls = load_wall_times(results, bench)
    notes = _footer(bench, unit, per_case["case"].nunique(), int((pvals["metric"] == "dice").sum()))
    with atomic_path(out / "per_case.csv") as tmp:
        per_case.to_csv(tmp, index=False)
    with atomic_path(out / "pvalues.csv") as tmp:
        pvals.to_csv(tmp, index=False)
    summary = {"benchmark": name, "dataset": meta.name, "protocol": bench["protocol"], "unit": unit,
               "empty_policy": bench["empty_policy"], "selection": bench["selection"],
               "reference": bench["reference"], "std_ddof": 1, "notes": notes,
               "cells": cells.replace({np.nan: None}).to_dict(orient="records"),
               "per_seed": seeds.replace({np.nan: None}).to_dict(orient="records"),
               "pvalues": pvals.replace({np.nan: None}).to_dict(orient="records"),
               "wall_times": walls.to_dict(orient="records")}
    write_json(out / "summary.json", summary)
    rows = _paper_rows(cells, pvals, bench, meta)
    _write_text(out / "table.md", _table_md(rows, meta, unit, notes))
    _write_text(out / "table.tex", _table_tex(rows, meta, unit, notes))
    title = (f"{name} ({meta.name}): protocol {bench['protocol']}, distances in {unit}, empty policy "
             f"{bench['empty_policy']}, selection {bench['selection']}; Dice and Jaccard in %")
    _write_text(out / "tables.html", _tables_html(title, rows, cells, pvals, walls, bench, meta, unit, notes))
    sheets = {"overall": cells[cells["group"] == "overall"], "per_class": cells[cells["group"] != "overall"],
              "per_seed": seeds, "pvalues": pvals, "wall_times": walls,
              "protocol": pd.DataFrame({"note": notes})}
    with atomic_path(out / "tables.xlsx") as tmp:
        _write_xlsx(tmp, {k: _readable(v, unit) for k, v in sheets.items()}, title)
    _write_text(out / "summary.txt", _summary_txt(cells, walls, bench, name, meta, unit, notes))
    from sslseg.paper_layouts import write_layout

    write_layout(PROTOCOLS[bench["protocol"]].layout, per_case, meta, out / "paper")
