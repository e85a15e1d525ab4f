# Config validation, wildcard constraints and input functions shared by the rules.
from pathlib import Path

from snakemake.utils import validate

validate(config, "../schemas/config.schema.yaml")

import sslseg.config
from sslseg import SslsegError
from sslseg.data import DATASETS
from sslseg.methods import METHODS

try:
    sslseg.config.validate(config, "config")
except SslsegError as e:
    raise WorkflowError(str(e))

# The stages read the same config file as the workflow; command-line `--config` overrides would be invisible to
# them, so they are refused (use --configfile with an edited copy instead).
CONFIGFILE = workflow.configfiles[-1]
if sslseg.config.load_config(CONFIGFILE) != config:
    raise WorkflowError(
        f"config differs from {CONFIGFILE} (--config overrides are not passed to the stages); use --configfile"
    )


wildcard_constraints:
    bench="|".join(config["benchmarks"]),
    dataset="|".join(DATASETS.names()),
    method="|".join(METHODS.names()),
    labels=r"\d+",
    seed=r"\d+",


def bench_cfg(wildcards):
    return config["benchmarks"][wildcards.bench]


def prepared_dir(wildcards):
    return f"resources/prepared/{bench_cfg(wildcards)['dataset']}"


def prepared_files(wildcards):
    d = prepared_dir(wildcards)
    return {"cases": f"{d}/cases.csv", "meta": f"{d}/dataset.json"}


def warm_start_input(wildcards):
    """The warm-start model this run starts from (benchmark key `warm_start`), if any."""
    ws = bench_cfg(wildcards).get("warm_start") or {}
    if ws.get("from") in (None, wildcards.method):
        return {}
    return {"init": f"results/{wildcards.bench}/{ws['from']}/l{wildcards.labels}/seed{wildcards.seed}/model.pt"}


def init_flag(wildcards, input):
    return f"--init {input.init}" if "init" in input.keys() else ""


def bench_hash(wildcards):
    """Changes when anything in the benchmark's config changes, so dependent jobs rerun."""
    return sslseg.config.config_hash(bench_cfg(wildcards))


def source_hash(wildcards):
    return sslseg.config.config_hash(config["sources"].get(wildcards.dataset, ""))


def run_paths(bench, names):
    b = config["benchmarks"][bench]
    return expand(
        "results/{bench}/{method}/l{labels}/seed{seed}/{name}",
        bench=bench,
        method=b["methods"],
        labels=b["labels"],
        seed=b["seeds"],
        name=names,
    )


def run_files(wildcards):
    """What aggregate reads per run: metrics (the tables) and provenance (wall times)."""
    return run_paths(wildcards.bench, ["metrics.csv", "provenance.json"])


def final_targets():
    """Summaries plus every model: Snakemake does not regenerate a deleted intermediate file unless it is
    requested, so requesting the models makes a deleted model rerun its seed's chain (and nothing else)."""
    benches = config["targets"] or list(config["benchmarks"])
    return [f"results/{b}/summary.txt" for b in benches] + [p for b in benches for p in run_paths(b, ["model.pt"])]
