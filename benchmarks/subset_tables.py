"""The tables of `sslseg aggregate` (summary, table.md/.tex, tables.xlsx, p-values) for a subset of a benchmark's
methods and label budgets, from runs that have finished -- while the rest of the benchmark has not run yet, or
for a view such as an ablation at one budget. The runs are read from results/{bench}; the tables go to --out,
with --figures the figures of `sslseg figures` to --out/figures.

    python benchmarks/subset_tables.py acdc-cpu --methods supervised unimatch aigcmatch --labels 7 --out tables/l7
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sslseg.config import load_config, report_spec
from sslseg.report import aggregate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench")
    ap.add_argument("--methods", nargs="+", required=True, help="the first is the reference of the tests")
    ap.add_argument("--labels", nargs="+", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--config", default="config.yaml")
    ap.add_argument("--figures", action="store_true", help="also draw the figures into --out/figures")
    args = ap.parse_args()
    cfg = load_config(args.config)
    b = cfg["benchmarks"][args.bench]
    b["methods"], b["labels"], b["reference"] = args.methods, args.labels, args.methods[0]
    prepared = Path("resources/prepared") / b["dataset"]
    spec, runs = report_spec(cfg, args.bench), Path("results") / args.bench
    aggregate(spec, runs, prepared, out=args.out)
    if args.figures:
        from sslseg.figures import figures

        figures(spec, runs, prepared, out=args.out / "figures", tables=args.out)
    print((args.out / "table.md").read_text())


if __name__ == "__main__":
    main()
