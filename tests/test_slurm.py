"""The Slurm profile against a real single-node Slurm (slurm-wlm + munge, no accounting storage), started and
stopped by tests/slurm/{start,stop}.sh. Needs root; run with `python -m pytest -m slurm`."""

import os
import subprocess

import pytest
import yaml

from conftest import REPO, TINY
from test_workflow import smk

SLURM = REPO / "tests" / "slurm"


@pytest.fixture(scope="module")
def slurm():
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld/slurmd/munged needs root")
    r = subprocess.run(["bash", str(SLURM / "start.sh")], capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        subprocess.run(["bash", str(SLURM / "stop.sh")])
        pytest.fail(f"could not start Slurm:\n{r.stdout}\n{r.stderr}")
    yield r.stdout.strip()
    subprocess.run(["bash", str(SLURM / "stop.sh")], timeout=120)


@pytest.mark.slurm
def test_synthetic_benchmark_through_the_slurm_profile(slurm, tmp_path):
    cfg = {"benchmarks": {"synth2d": dict(TINY["synth2d"], seeds=[0])}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    r = smk(tmp_path, "--profile", str(REPO / "workflow" / "profiles" / "slurm"))
    assert "submitted with SLURM jobid" in r.stdout + r.stderr
    summary = (tmp_path / "results" / "synth2d" / "summary.txt").read_text()
    assert "supervised" in summary and "mean_teacher" in summary
    assert "Nothing to be done" in smk(tmp_path, "--profile", str(REPO / "workflow" / "profiles" / "slurm"),
                                       "-n").stdout
