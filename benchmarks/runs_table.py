"""Per-run view of a finished benchmark: test Dice of every seed (class mean over the test cases, as the summary
table averages it), the selected iteration and the training wall time, one row per method x budget; and paired
Wilcoxon tests between any two methods (per-case class means averaged over seeds), which ``pvalues.csv`` does not
hold (it compares every method with the reference only).

    python benchmarks/runs_table.py results/acdc-cpu
    python benchmarks/runs_table.py results/acdc-cpu --pair aigcmatch unimatch --pair sscd bcp
    python benchmarks/runs_table.py results/synthla --metric hd95 --pair egm_dt-lr01 bcp-lr01
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
from scipy.stats import wilcoxon

from sslseg.report import LABELS, metric_scale
from sslseg.stats import METRICS


def runs(root: Path) -> pd.DataFrame:
    rows = []
    for metrics in sorted(root.glob("*/l*/seed*/metrics.csv")):
        run = metrics.parent
        method, budget, seed = run.parent.parent.name, int(run.parent.name[1:]), int(run.name[4:])
        df = pd.read_csv(metrics)
        dice = df.groupby("class_name")["dice"].mean().mean() * 100
        prov = json.loads((run / "provenance.json").read_text())
        rows.append(dict(method=method, budget=budget, seed=seed, dice=dice, selected=prov["selected_iteration"],
                         wall_min=prov["wall_time_s"] / 60))
    return pd.DataFrame(rows)


def case_means(root: Path, method: str, budget: int, metric: str = "dice") -> pd.Series:
    files = sorted(root.glob(f"{method}/l{budget}/seed*/metrics.csv"))
    frames = [pd.read_csv(p).groupby("case")[metric].mean() for p in files]
    return pd.concat(frames, axis=1).mean(axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--pair", nargs=2, action="append", default=[], metavar=("A", "B"))
    ap.add_argument("--metric", default="dice", choices=METRICS,
                    help="metric of the --pair tests (Dice and Jaccard printed in %%)")
    args = ap.parse_args()
    scale, label = metric_scale(args.metric), LABELS[args.metric]
    df = runs(args.results)
    print("| Method | Labelled | Dice per seed (%) | mean | selected iteration | wall min |")
    print("|---|---|---|---|---|---|")
    for (method, budget), g in df.groupby(["method", "budget"], sort=False):
        g = g.sort_values("seed")
        print(f"| {method} | {budget} | {' / '.join(f'{d:.1f}' for d in g.dice)} | {g.dice.mean():.2f} | "
              f"{', '.join(map(str, g.selected))} | {', '.join(f'{w:.1f}' for w in g.wall_min)} |")
    for a, b in args.pair:
        for budget in sorted(df.budget.unique()):
            if not ((df.method == a) & (df.budget == budget)).any() or not ((df.method == b) & (df.budget == budget)).any():
                continue
            ca, cb = (case_means(args.results, m, budget, args.metric) for m in (a, b))
            common = ca.index.intersection(cb.index)
            p = wilcoxon(ca[common], cb[common]).pvalue
            print(f"{a} vs {b}, {budget} labelled: mean {label} {ca[common].mean() * scale:.2f} vs "
                  f"{cb[common].mean() * scale:.2f}, paired Wilcoxon over {len(common)} cases p = {p:.2g}")


if __name__ == "__main__":
    main()
