"""Time `snakemake -n` of the sslseg workflow against a bare Snakefile that builds the same DAG.

    python benchmarks/bench_dag.py [--seeds 20] [--repeat 3]

One benchmark on the ACDC dataset with ten methods, all eight label budgets and ``--seeds`` seeds (20: 1,600 runs,
4,800 train/infer/evaluate jobs plus download, preprocess, aggregate and figures), SSL methods warm-started from
the supervised run as acdc-cpu is. The bare Snakefile has the same rules, files, wildcards and directives (logs,
benchmarks, conda, resources, report outputs) with parameters computed from the config in a line of plain Python,
and imports nothing of sslseg: the difference is what the workflow's configuration check and its per-job
parameters cost. The sslseg workflow is timed with an empty ``.snakemake/sslseg`` cache ("cold": the
configuration is validated against the registries, which imports torch) and with the cache its first run left
("warm"). Runs alternate; each line is the median of ``--repeat`` wall times.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
METHODS = ["supervised", "mean_teacher", "uamt", "cps", "fixmatch", "unimatch", "bcp", "aigcmatch", "egm_dt", "sscd"]

BARE = '''
configfile: "config.yaml"

import json

B = config["benchmarks"]["big"]
RUN = "results/{bench}/{method}/l{labels}/seed{seed}"
JOB = "{bench}/{method}_l{labels}_seed{seed}"


def runs(names):
    return expand("results/big/{method}/l{labels}/seed{seed}/{name}", method=B["methods"], labels=B["labels"],
                  seed=B["seeds"], name=names)


def spec(w):
    return json.dumps({"method": w.method, "labels": int(w.labels), "seed": int(w.seed), **B}, sort_keys=True)


def warm(w):
    return {} if w.method == "supervised" else {"init": f"results/big/supervised/l{w.labels}/seed{w.seed}/model.pt"}


def prepared(w):
    return {"cases": "resources/prepared/acdc/cases.csv", "meta": "resources/prepared/acdc/dataset.json"}


rule all:
    input: ["results/big/summary.txt", "results/big/figures"] + runs(["model.pt"])
    default_target: True

rule download:
    output: "resources/raw/{dataset}/download.json"
    params: source=lambda w: ""
    conda: "env.yaml"
    log: "logs/download/{dataset}.log"
    benchmark: "logs/benchmarks/download/{dataset}.tsv"
    retries: 2
    shell: "sslseg download --dataset {wildcards.dataset} {params.source} > {log} 2>&1"

rule preprocess:
    input: "resources/raw/{dataset}/download.json"
    output: cases="resources/prepared/{dataset}/cases.csv", meta="resources/prepared/{dataset}/dataset.json"
    params: format=3
    conda: "env.yaml"
    log: "logs/preprocess/{dataset}.log"
    benchmark: "logs/benchmarks/preprocess/{dataset}.tsv"
    shell: "sslseg preprocess --dataset {wildcards.dataset} > {log} 2>&1"

rule train:
    input: unpack(prepared), unpack(warm)
    output: model=RUN + "/model.pt", log_csv=RUN + "/train_log.csv", provenance=RUN + "/provenance.json"
    params: prepared=lambda w: "resources/prepared/acdc", run=RUN, spec=spec,
            init=lambda w, input: f"--init {input.init}" if "init" in input.keys() else ""
    conda: "env.yaml"
    log: "logs/train/" + JOB + ".log"
    benchmark: "logs/benchmarks/train/" + JOB + ".tsv"
    threads: 1
    resources: gpu=1
    shell: "sslseg train --spec {params.spec:q} {params.init} > {log} 2>&1"

rule infer:
    input: unpack(prepared), model=RUN + "/model.pt"
    output: directory(RUN + "/pred")
    params: prepared=lambda w: "resources/prepared/acdc", flags=lambda w: "--protocol ssl4mis-2d"
    conda: "env.yaml"
    log: "logs/infer/" + JOB + ".log"
    benchmark: "logs/benchmarks/infer/" + JOB + ".tsv"
    resources: gpu=1
    shell: "sslseg infer {params.flags} > {log} 2>&1"

rule evaluate:
    input: unpack(prepared), pred=RUN + "/pred"
    output: RUN + "/metrics.csv"
    params: prepared=lambda w: "resources/prepared/acdc", flags=lambda w: "--protocol ssl4mis-2d"
    conda: "env.yaml"
    log: "logs/evaluate/" + JOB + ".log"
    benchmark: "logs/benchmarks/evaluate/" + JOB + ".tsv"
    shell: "sslseg evaluate {params.flags} > {log} 2>&1"

rule aggregate:
    input: unpack(prepared), runs=lambda w: runs(["metrics.csv", "provenance.json"])
    output:
        summary="results/{bench}/summary.txt",
        json="results/{bench}/summary.json",
        per_case="results/{bench}/per_case.csv",
        pvalues="results/{bench}/pvalues.csv",
        xlsx=report("results/{bench}/tables.xlsx", category="{bench}", subcategory="Tables"),
        md="results/{bench}/table.md",
        tex=report("results/{bench}/table.tex", category="{bench}", subcategory="Tables"),
        html=report("results/{bench}/tables.html", category="{bench}", subcategory="Tables"),
    params: prepared=lambda w: "resources/prepared/acdc", spec=lambda w: json.dumps(B, sort_keys=True)
    conda: "env.yaml"
    log: "logs/aggregate/{bench}.log"
    benchmark: "logs/benchmarks/aggregate/{bench}.tsv"
    shell: "sslseg aggregate --spec {params.spec:q} > {log} 2>&1"

rule figures:
    input: unpack(prepared), per_case="results/{bench}/per_case.csv", summary="results/{bench}/summary.json",
           runs=lambda w: runs(["train_log.csv", "provenance.json", "pred"])
    output:
        report(directory("results/{bench}/figures"), patterns=["{name}.png"], category="{bench}",
               subcategory="Figures"),
    params: prepared=lambda w: "resources/prepared/acdc", spec=lambda w: json.dumps(B, sort_keys=True),
            captions=lambda w: {"cases": "caption"}
    conda: "env.yaml"
    log: "logs/figures/{bench}.log"
    benchmark: "logs/benchmarks/figures/{bench}.tsv"
    shell: "sslseg figures --spec {params.spec:q} > {log} 2>&1"
'''


def config(seeds: int) -> dict:
    return {"targets": ["big"], "benchmarks": {"big": {
        "dataset": "acdc", "methods": METHODS, "reference": "supervised", "labels": [1, 3, 7, 14, 21, 28, 35, 70],
        "seeds": list(range(seeds)), "protocol": "ssl4mis-2d",
        "schedule": {"iterations": 3000, "batch_labelled": 4, "batch_unlabelled": 4, "patch": [128, 128]},
        "warm_start": {"from": "supervised", "iterations": 1000}}}}


def dry_run(snakefile: Path, workdir: Path) -> tuple[float, int]:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-s", str(snakefile), "-d", str(workdir)],
                       capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(f"{snakefile}: dry run failed\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    total = [line.split()[-1] for line in r.stdout.splitlines() if line.startswith("total")]
    return wall, int(total[-1]) if total else -1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for d in ("sslseg", "bare"):
            (tmp / d).mkdir()
            (tmp / d / "config.yaml").write_text(yaml.safe_dump(config(a.seeds)))
        (tmp / "bare" / "Snakefile").write_text(BARE)
        (tmp / "bare" / "env.yaml").write_text("dependencies: [python]\n")
        times: dict[str, list[float]] = {"bare": [], "sslseg cold": [], "sslseg warm": []}
        jobs = {}
        for _ in range(a.repeat):
            times["bare"].append(dry_run(tmp / "bare" / "Snakefile", tmp / "bare")[0])
            shutil.rmtree(tmp / "sslseg" / ".snakemake" / "sslseg", ignore_errors=True)
            times["sslseg cold"].append(dry_run(REPO / "Snakefile", tmp / "sslseg")[0])
            wall, jobs["sslseg"] = dry_run(REPO / "Snakefile", tmp / "sslseg")
            times["sslseg warm"].append(wall)
        jobs["bare"] = dry_run(tmp / "bare" / "Snakefile", tmp / "bare")[1]
    base = statistics.median(times["bare"])
    print(f"dry run of {jobs['sslseg']} jobs (bare Snakefile: {jobs['bare']}), median of {a.repeat}:")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"  {name:12s} {m:6.2f} s  (+{m - base:.2f} s vs bare; runs {', '.join(f'{t:.2f}' for t in ts)})")


if __name__ == "__main__":
    main()
