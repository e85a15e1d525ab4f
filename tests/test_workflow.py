"""The Snakemake workflow: lint, dry run, config errors, a tiny end-to-end run, no-op rerun and targeted rerun."""

import re
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, TINY


def smk(workdir, *args, check=True):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def job_counts(dry_run_output: str) -> dict[str, int]:
    table = dry_run_output.split("Job stats:")[-1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "total"}


def write_config(workdir, cfg):
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))


def test_lint_is_clean():
    r = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and "Congratulations" in r.stdout + r.stderr, r.stdout + r.stderr


def test_dry_run_of_the_repository_config(tmp_path):
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    counts = job_counts(smk(tmp_path, "-n").stdout)
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    targets = [cfg["benchmarks"][t] for t in cfg["targets"]]
    runs = sum(len(b["methods"]) * len(b["labels"]) * len(b["seeds"]) for b in targets)
    assert counts["train"] == counts["infer"] == counts["evaluate"] == runs
    assert counts["aggregate"] == len(targets)


@pytest.mark.parametrize("edit, needle", [
    (lambda c: c["benchmarks"]["synth2d"].update(epochs=3), "epochs"),
    (lambda c: c["benchmarks"]["synth2d"].update(methods=["supervised", "nosuch"]), "nosuch"),
    (lambda c: c["benchmarks"]["synth2d"]["schedule"].update(iterations="many"), "many"),
])
def test_bad_config_names_the_problem(tmp_path, edit, needle):
    cfg = {"benchmarks": {k: dict(v) for k, v in TINY.items()}}
    cfg["benchmarks"]["synth2d"]["schedule"] = dict(TINY["synth2d"]["schedule"])
    edit(cfg)
    write_config(tmp_path, cfg)
    r = smk(tmp_path, "-n", check=False)
    assert r.returncode != 0 and needle in r.stdout + r.stderr


def test_tiny_workflow_end_to_end_and_reruns(tmp_path):
    cfg = {"benchmarks": {"synth2d": TINY["synth2d"],
                          "synth3d": dict(TINY["synth3d"], methods=["supervised"], seeds=[0])}}
    write_config(tmp_path, cfg)
    smk(tmp_path, "--cores", "2", "--show-failed-logs")
    for bench in ("synth2d", "synth3d"):
        for name in ("summary.txt", "summary.json", "per_case.csv", "pvalues.csv", "tables.xlsx", "table.md",
                     "table.tex"):
            assert (tmp_path / "results" / bench / name).is_file(), name
    summary = (tmp_path / "results" / "synth2d" / "summary.txt").read_text()
    assert "mean_teacher" in summary and "overall" in summary and "tail" in summary
    assert "Nothing to be done" in smk(tmp_path, "-n").stdout + smk(tmp_path, "-n").stderr
    (tmp_path / "results" / "synth2d" / "mean_teacher" / "l1" / "seed1" / "model.pt").unlink()
    counts = job_counts(smk(tmp_path, "-n").stdout)
    assert counts == {"train": 1, "infer": 1, "evaluate": 1, "aggregate": 1, "all": 1}
