"""The README's demo (`snakemake --cores 2` on the repository config), end to end. Slow: minutes."""

import json
import shutil

import pytest

from conftest import REPO
from test_workflow import smk


@pytest.mark.slow
def test_demo_builds_both_summaries_and_mean_teacher_beats_supervised(tmp_path):
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    smk(tmp_path, "--cores", "2", "--show-failed-logs", timeout=3600)  # about 14 min on 2 cores
    for bench in ("synth2d", "synth3d"):
        assert (tmp_path / "results" / bench / "summary.txt").is_file()
    cells = json.loads((tmp_path / "results" / "synth2d" / "summary.json").read_text())["cells"]
    dice = {c["method"]: c["dice_mean"] for c in cells if c["group"] == "overall"}
    assert dice["mean_teacher"] > dice["supervised"], dice
