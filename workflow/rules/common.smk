# Config validation (inheritance, defaults, registry names), wildcard constraints, and what each rule passes to its
# stage. Stages never read the config file themselves: each gets its part as arguments, and that part is a rule
# parameter, so Snakemake reruns exactly the jobs whose part changed. All of it comes from one view of the config
# (sslseg.config.workflow_view), derived once per config and package and kept in .snakemake/sslseg: an unchanged
# workflow builds its DAG without importing the methods (torch) or resolving a run twice.
import json
import re
import shlex

import sslseg.config
from sslseg import SslsegError

try:
    VIEW = sslseg.config.workflow_view(config, workflow.configfiles[-1] if workflow.configfiles else "config",
                                       ".snakemake/sslseg")
except SslsegError as e:
    raise WorkflowError(str(e))
config.clear()
config.update(VIEW["config"])
FORMAT = VIEW["format"]


wildcard_constraints:
    bench="|".join(config["benchmarks"]),
    dataset="|".join(VIEW["datasets"]),
    method="|".join(map(re.escape, sorted(set(VIEW["methods"]).union(
        *(b["variants"] for b in config["benchmarks"].values())), key=len, reverse=True))),
    labels=r"\d+",
    seed=r"\d+",


def bench_cfg(wildcards):
    return config["benchmarks"][wildcards.bench]


def prepared_dir(wildcards):
    return f"resources/prepared/{bench_cfg(wildcards)['dataset']}"


def prepared_files(wildcards):
    d = prepared_dir(wildcards)
    return {"cases": f"{d}/cases.csv", "meta": f"{d}/dataset.json"}


def source_flags(wildcards):
    """--source/--sha256 of the dataset's `sources:` entry (none: the dataset's default)."""
    entry = config["sources"].get(wildcards.dataset)
    if not entry:
        return ""
    url, sha = (entry, None) if isinstance(entry, str) else (entry["url"], entry.get("sha256"))
    return f"--source {shlex.quote(url)}" + (f" --sha256 {sha}" if sha else "")


def warm_start_input(wildcards):
    """The warm-start model this run starts from (benchmark key `warm_start`), if any."""
    w = wildcards
    ws = json.loads(run_spec(w))["warm_start"]
    if ws is None:
        return {}
    return {"init": f"results/{w.bench}/{ws['from']}/l{w.labels}/seed{w.seed}/model.pt"}


def init_flag(wildcards, input):
    return f"--init {input.init}" if "init" in input.keys() else ""


def run_spec(w):
    """The run's identity (sslseg.config.RunSpec) as JSON: training reruns when, and only when, it changes. From
    the view, or resolved here for a run outside the benchmark's grid (a seed or budget asked for by path)."""
    spec = VIEW["benchmarks"][w.bench]["runs"].get(f"{w.method}/l{int(w.labels)}/seed{int(w.seed)}")
    if spec is None:
        spec = sslseg.config.run_spec(config, w.bench, w.method, int(w.labels), int(w.seed)).to_json()
    return spec


def infer_flags(wildcards):
    a = VIEW["benchmarks"][wildcards.bench]["infer"]
    return f"--protocol {a['protocol']} --overlap {a['overlap']} --mode {a['mode']} --batch-size {a['batch_size']}"


def evaluate_flags(wildcards):
    a = VIEW["benchmarks"][wildcards.bench]["evaluate"]
    return f"--protocol {a['protocol']} --empty-policy {a['empty_policy']}"


def report_spec(wildcards):
    return json.dumps(VIEW["benchmarks"][wildcards.bench]["report"], sort_keys=True, separators=(",", ":"))


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


def figure_inputs(wildcards):
    """What the figures read per run besides the tables: training logs, selected iterations, predictions."""
    return run_paths(wildcards.bench, ["train_log.csv", "provenance.json", "pred"])


def figure_captions(wildcards):
    return VIEW["benchmarks"][wildcards.bench]["captions"]


def final_targets():
    """Summaries and figures plus every model: Snakemake does not regenerate a deleted intermediate file unless
    it is requested, so requesting the models makes a deleted model rerun its seed's chain (and nothing else)."""
    benches = config["targets"] or list(config["benchmarks"])
    return [f"results/{b}/{name}" for b in benches for name in ("summary.txt", "figures")] + [
        p for b in benches for p in run_paths(b, ["model.pt"])]
