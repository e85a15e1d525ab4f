"""The Snakemake workflow: lint, dry run, config errors, a tiny end-to-end run, no-op rerun and targeted rerun."""

import copy
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, TINY


def smk(workdir, *args, check=True, timeout=900):
    """Run the workflow in `workdir`; `timeout` (s) only guards against a hang, it is not a speed requirement."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
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
    assert counts["aggregate"] == counts["figures"] == len(targets)


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


@pytest.mark.slow  # about 3 minutes; .ci/run runs the slow tests after the default suite
def test_tiny_workflow_end_to_end_and_reruns(tmp_path):
    """A tiny run of grey 2D, RGB 2D (JPEG files), one- and two-channel 3D benchmarks, launched with
    --configfile beside a config.yaml that describes something else; then what each kind of edit reruns."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"benchmarks": {"other": dict(TINY["synth3d"])}}))
    cfg = {"benchmarks": {"synth2d": TINY["synth2d"],
                          "synth3d": dict(TINY["synth3d"], methods=["supervised"], seeds=[0]),
                          "synthpolyp": dict(TINY["synthpolyp"], methods=["supervised"]),
                          "synthmm": dict(TINY["synthmm"], methods=["supervised"])}}
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(cfg))
    run = ("--configfile", str(edited))
    smk(tmp_path, *run, "--cores", "2", "--show-failed-logs", timeout=1800)
    assert not (tmp_path / "results" / "other").exists()
    for bench, b in cfg["benchmarks"].items():
        for name in ("summary.txt", "summary.json", "per_case.csv", "pvalues.csv", "tables.xlsx", "table.md",
                     "table.tex", "tables.html"):
            assert (tmp_path / "results" / bench / name).is_file(), name
        figures = {p.name for p in (tmp_path / "results" / bench / "figures").glob("*.png")}
        assert figures == {"curves.png", "cases.png", "budget.png", "classes.png",
                           *(f"overlays_l{n}.png" for n in b["labels"])}, (bench, figures)
    for bench in ("synth2d", "synth3d"):
        check_figure_panels(tmp_path, cfg, bench)
    report = tmp_path / "report.html"
    smk(tmp_path, *run, "--report", str(report))
    page = report.read_text()
    for bench in cfg["benchmarks"]:  # every benchmark's tables and figures, with their captions
        assert f"results/{bench}/tables.html" in page and f"results/{bench}/figures/overlays_l" in page
    assert "synth2d: Training loss" in page and "Holm-corrected Wilcoxon" in page and "tail classes shaded" in page
    summary = (tmp_path / "results" / "synth2d" / "summary.txt").read_text()
    assert "mean_teacher" in summary and "overall" in summary and "tail" in summary
    assert "whole" in (tmp_path / "results" / "synthmm" / "summary.txt").read_text()  # regions scored
    assert "Nothing to be done" in smk(tmp_path, *run, "-n").stdout + smk(tmp_path, *run, "-n").stderr
    (tmp_path / "results" / "synth2d" / "mean_teacher" / "l1" / "seed1" / "model.pt").unlink()
    counts = job_counts(smk(tmp_path, *run, "-n").stdout)
    assert counts == {"train": 1, "infer": 1, "evaluate": 1, "aggregate": 1, "figures": 1, "all": 1}
    smk(tmp_path, *run, "--cores", "2")

    def dry(change):
        new = yaml.safe_load(edited.read_text())
        change(new["benchmarks"]["synth2d"])
        path = tmp_path / "changed.yaml"
        path.write_text(yaml.safe_dump(new))
        out = smk(tmp_path, "--configfile", str(path), "-n").stdout
        return job_counts(out), out

    counts, out = dry(lambda b: b.update(seeds=[0, 1, 2]))  # one more seed: its two runs, nothing else
    assert counts == {"train": 2, "infer": 2, "evaluate": 2, "aggregate": 1, "figures": 1, "all": 1}, out
    counts, _ = dry(lambda b: b.update(methods=["supervised", "mean_teacher", "cps"]))  # one more method
    assert counts == {"train": 2, "infer": 2, "evaluate": 2, "aggregate": 1, "figures": 1, "all": 1}
    counts, _ = dry(lambda b: b.update(hparams={"cps": {"consistency": 1.0}}))  # a method it does not run
    assert counts == {}
    counts, _ = dry(lambda b: b.update(hparams={"mean_teacher": {"consistency": 1.0}}))
    assert counts == {"train": 2, "infer": 2, "evaluate": 2, "aggregate": 1, "figures": 1, "all": 1}
    counts, _ = dry(lambda b: b.update(inference={"batch_size": 1}))  # inference only: no training
    assert counts == {"infer": 4, "evaluate": 4, "aggregate": 1, "figures": 1, "all": 1}
    counts, _ = dry(lambda b: b.update(empty_policy="exclude"))  # evaluation only
    assert counts == {"evaluate": 4, "aggregate": 1, "figures": 1, "all": 1}
    counts, _ = dry(lambda b: b.update(reference="mean_teacher"))  # reporting only
    assert counts == {"aggregate": 1, "figures": 1, "all": 1}


def check_figure_panels(workdir, cfg, bench):
    """The panels of each figure: their number, titles, tick labels and legends follow the benchmark."""
    from sslseg.config import report_spec, validate
    from sslseg.figures import draw

    spec = report_spec(validate(copy.deepcopy(cfg)), bench)
    methods, budgets = spec["methods"], spec["labels"]
    figs = draw(spec, workdir / "results" / bench, workdir / "resources" / "prepared" / spec["dataset"])
    curves = figs["curves"].axes  # loss and validation rows per budget, a column per method
    assert len(curves) == 2 * len(budgets) * len(methods)
    assert curves[0].get_title() == f"{methods[0]}, {budgets[0]} labelled"
    assert len(curves[0].lines) == len(spec["seeds"]) and curves[len(methods)].get_ylabel() == "validation Dice (%)"
    cases = figs["cases"].axes
    assert len(cases) == 2 * len(budgets) and cases[0].get_ylabel() == "Dice (%)"
    assert [t.get_text() for t in cases[0].get_xticklabels()] == [f"{methods[0]} (ref)", *methods[1:]]
    assert cases[-1].get_ylabel().startswith("HD95 (")
    budget = figs["budget"].axes
    assert len(budget) == 2 and [t.get_text() for t in budget[0].get_legend().get_texts()] == methods
    classes = figs["classes"].axes
    ticks = [t.get_text() for t in classes[0].get_xticklabels()]
    tail = {"synth2d": ["RV (tail)"], "synth3d": ["gallbladder (tail)", "adrenal (tail)"]}[bench]
    assert len(classes) == len(budgets) and all(t in ticks for t in tail) and ticks[-1] == "overall"
    for b in budgets:
        panels = figs[f"overlays_l{b}"].axes
        assert len(panels) == 3 * (2 + len(methods))  # best / median / worst x image, reference, methods
        assert [a.get_title().split("\n")[0] for a in panels[:2 + len(methods)]] == ["image", "reference", *methods]
        assert panels[0].get_ylabel().startswith("best:\n") and panels[-1 - len(methods) - 1].get_ylabel().startswith(
            "worst:\n")
        assert len(figs[f"overlays_l{b}"].legends[0].get_texts()) == (3 if bench == "synth2d" else 7)


def test_config_overrides_on_the_command_line_reach_the_stages(tmp_path):
    write_config(tmp_path, {"benchmarks": {"synth2d": TINY["synth2d"], "synth3d": TINY["synth3d"]}})
    r = smk(tmp_path, "-n", "-p", "--config", "targets=[synth3d]")
    counts = job_counts(r.stdout)
    assert counts["train"] == 4 and counts["aggregate"] == 1  # synth3d only: 2 methods x 2 seeds
    assert "sslseg train --spec" in r.stdout and '"name":"synth3d"' in r.stdout and "synth2d" not in r.stdout


def test_variants_and_warm_start_exceptions_in_the_dag(tmp_path):
    b = dict(TINY["synth2d"], methods=["supervised", "mean_teacher", "mt-strong", "egm_dt"], seeds=[0],
             variants={"mt-strong": {"method": "mean_teacher", "hparams": {"consistency": 1.0}}},
             warm_start={"from": "supervised", "iterations": 4, "except": ["egm_dt"]})
    write_config(tmp_path, {"benchmarks": {"t": b}, "targets": ["t"]})
    out = smk(tmp_path, "-n", "-p").stdout
    assert job_counts(out)["train"] == 4
    cmds = {m: next(line for line in out.splitlines() if f"--out results/t/{m}/l1/seed0" in line)
            for m in b["methods"]}
    init = "--init results/t/supervised/l1/seed0/model.pt"
    assert init in cmds["mean_teacher"] and init in cmds["mt-strong"] and "--init" not in cmds["egm_dt"]
    assert '"name":"mt-strong"' in cmds["mt-strong"] and '"method":"mean_teacher"' in cmds["mt-strong"]
    assert '"consistency":1.0' in cmds["mt-strong"] and '"consistency":0.1' in cmds["mean_teacher"]


def test_a_run_outside_the_grid_is_resolved_on_the_spot(tmp_path):
    """The cached view holds the benchmark's grid; a seed asked for by path gets its own specification (and its
    warm start), the same as if the config had listed it."""
    b = dict(TINY["synth2d"], methods=["supervised", "mean_teacher"], seeds=[0],
             warm_start={"from": "supervised", "iterations": 4})
    write_config(tmp_path, {"benchmarks": {"t": b}, "targets": ["t"]})
    smk(tmp_path, "-n")  # derives and stores the view
    out = smk(tmp_path, "-n", "-p", "results/t/mean_teacher/l1/seed7/model.pt").stdout
    cmd = next(line for line in out.splitlines() if "--out results/t/mean_teacher/l1/seed7" in line)
    assert '"seed":7' in cmd and "--init results/t/supervised/l1/seed7/model.pt" in cmd
    assert job_counts(out)["train"] == 2
