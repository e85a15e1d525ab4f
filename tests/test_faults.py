"""Faults and bad input that used to lose data or end in a traceback (docs/robustness.md): a full disk in
preprocess, infer, train and evaluate; overlapping split lists; truncated, empty or foreign metrics tables and the
wrong prepared folder in aggregate. Each gives one line naming the file, a non-zero exit, and earlier results
stay as they were."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
import SimpleITK as sitk

import sslseg.data
from conftest import fit
from sslseg import SslsegError
from sslseg.cli import main
from sslseg.config import load_config, report_spec
from sslseg.data import check_splits
from test_io_errors import _config, _evaluate, _one_error_line, _perfect, _prepared


def _empty_write(img, path, *args, **kwargs):
    """SimpleITK on a full disk: no exception, a short (here empty) file."""
    open(path, "wb").close()


def test_infer_on_a_full_disk_keeps_the_earlier_predictions(tiny, prepared, tmp_path, capsys, monkeypatch):
    b = tiny["synth2d"]
    b["schedule"]["iterations"] = 2
    model = fit(b, "supervised", 1, 0, prepared["synth2d"], tmp_path / "run")
    out = tmp_path / "pred"
    args = ["infer", "--model", str(model), "--prepared", str(prepared["synth2d"]), "--out", str(out)]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(sitk, "WriteImage", _empty_write)
    assert main(args) == 1
    _one_error_line(capsys, str(out.with_name(".pred.tmp")), "could not be written completely (disk full?)")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing earlier lost
    assert not out.with_name(".pred.tmp").exists()


def test_preprocess_on_a_full_disk_keeps_the_earlier_cases(tmp_path, capsys, monkeypatch):
    raw, out = tmp_path / "raw", tmp_path / "prepared"
    assert main(["download", "--dataset", "synth2d", "--out", str(raw)]) == 0
    assert main(["preprocess", "--dataset", "synth2d", "--raw", str(raw), "--out", str(out)]) == 0
    before = sorted(p.name for p in (out / "cases").iterdir())
    real = Path.write_bytes

    def full(self, data):  # a full disk: write() fails, naming no file
        if self.suffix == ".h5":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    assert main(["preprocess", "--dataset", "synth2d", "--raw", str(raw), "--out", str(out)]) == 1
    _one_error_line(capsys, str(out / ".cases.tmp"), ".h5: could not be written", "No space left on device")
    assert sorted(p.name for p in (out / "cases").iterdir()) == before
    assert not (out / ".cases.tmp").exists()


def test_an_os_error_is_one_line_naming_the_file(tmp_path, capsys):
    prepared, cfg, pred = _prepared(tmp_path), _config(tmp_path), _perfect(tmp_path)
    blocker = tmp_path / "results"
    blocker.write_text("a file where a folder is expected\n")
    assert _evaluate(cfg, pred, prepared, blocker / "metrics.csv") == 1
    _one_error_line(capsys, str(blocker))


def test_overlapping_split_lists_are_refused_before_anything_is_written(tmp_path, capsys, monkeypatch):
    splits = tmp_path / "splits"
    shutil.copytree(sslseg.data.SPLIT_DIR / "synth2d", splits / "synth2d")
    test = (splits / "synth2d" / "test.list").read_text()
    first_train = (splits / "synth2d" / "train.list").read_text().split()[0]
    (splits / "synth2d" / "test.list").write_text(test + first_train + "\n")
    monkeypatch.setattr(sslseg.data, "SPLIT_DIR", splits)
    with pytest.raises(SslsegError, match=f"1 case\\(s\\) in both train.list and test.list \\({first_train}\\)"):
        check_splits("synth2d")
    raw, out = tmp_path / "raw", tmp_path / "prepared"
    assert main(["download", "--dataset", "synth2d", "--out", str(raw)]) == 0
    assert main(["preprocess", "--dataset", "synth2d", "--raw", str(raw), "--out", str(out)]) == 1
    _one_error_line(capsys, "train.list and test.list")
    assert not out.exists()


def _results(tmp_path):
    """A finished two-method benchmark on the hand-made prepared folder: (aggregate arguments, one metrics.csv)."""
    prepared, cfg, pred = _prepared(tmp_path), _config(tmp_path), _perfect(tmp_path)
    metrics = tmp_path / "metrics.csv"
    assert _evaluate(cfg, pred, prepared, metrics) == 0
    results = tmp_path / "results"
    for method in ("supervised", "mean_teacher"):
        run = results / method / "l1" / "seed0"
        run.mkdir(parents=True)
        shutil.copy(metrics, run / "metrics.csv")
        (run / "provenance.json").write_text(json.dumps({"wall_time_s": 1.0, "selected_iteration": 1,
                                                          "device": "cpu"}))
    spec = json.dumps(report_spec(load_config(cfg), "b"))
    return ["aggregate", "--spec", spec, "--results", str(results), "--prepared", str(prepared)], results


@pytest.mark.parametrize("damage, needle", [
    (lambda t: t[: len(t) // 2], "incomplete rows"),  # cut mid-row
    (lambda t: "\n".join(t.splitlines()[:4]) + "\n", "rows are missing"),  # three rows left
    (lambda t: "", "unreadable metrics table"),
    (lambda t: t.splitlines()[0] + "\n", "rows are missing"),  # header only
    (lambda t: "a,b\n1,2\n", "not a metrics table"),
    (lambda t: t + t.splitlines()[1] + "\n", "not one per test case"),  # a row twice
    (lambda t: t.rstrip("\n").rsplit(",", 6)[0] + "\n", "incomplete rows"),  # cut inside the last row
])
def test_aggregate_refuses_a_damaged_metrics_table(tmp_path, capsys, damage, needle):
    args, results = _results(tmp_path)
    assert main(args) == 0
    summary = (results / "summary.txt").read_bytes()
    capsys.readouterr()
    target = results / "mean_teacher" / "l1" / "seed0" / "metrics.csv"
    target.write_text(damage(target.read_text()))
    assert main(args) == 1
    _one_error_line(capsys, str(target), needle)
    assert (results / "summary.txt").read_bytes() == summary  # the earlier tables stay


def test_aggregate_with_the_prepared_folder_of_another_dataset(tmp_path, capsys, prepared):
    args, _ = _results(tmp_path)
    args[args.index("--prepared") + 1] = str(prepared["synth3d"])
    assert main(args) == 1
    _one_error_line(capsys, "holds dataset 'synth3d'", "'synth2d'")


@pytest.mark.parametrize("dataset", ["acdc", "promise12"])
def test_zip_slip_names_the_users_archive_and_leaves_nothing(tmp_path, capsys, dataset):
    import zipfile

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../../evil.txt", "outside\n")
    raw = tmp_path / "deep" / "raw"
    from sslseg.data.download import sha256sum

    # PROMISE12 pins its archive's digest: the malicious zip is only opened when its own digest is passed
    pin = ["--sha256", sha256sum(evil)] if dataset == "promise12" else []
    assert main(["download", "--dataset", dataset, "--source", str(evil), "--out", str(raw), *pin]) == 1
    _one_error_line(capsys, f"{evil}: member '../../evil.txt' would be written outside the extraction folder")
    assert not (tmp_path / "deep" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert not raw.exists()  # no .incoming left behind, and no empty folder


def test_a_label_budget_without_a_frozen_list_fails_at_configuration(tmp_path, capsys):
    from test_io_errors import CONFIG, _train_args

    cfg = _config(tmp_path, CONFIG.replace("labels: [1]", "labels: [1, 99]"))
    assert main(_train_args(cfg, tmp_path)) == 1
    _one_error_line(capsys, "benchmarks/b/labels: synth2d has no frozen labelled list for [99] (budgets: ")


def test_a_built_wheel_holds_every_package_data_file(tmp_path):
    """A non-editable install must find the split lists, checksums and schema it reads at run time."""
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    import shutil

    root = Path(__file__).resolve().parent.parent
    src = tmp_path / "src"  # a clean copy: a build/ or egg-info folder in the checkout would mask omissions
    shutil.copytree(root / "sslseg", src / "sslseg", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "wheel"), str(src)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "wheel").glob("sslseg-*.whl")
    inside = set(zipfile.ZipFile(wheel).namelist())
    data = {p.relative_to(root).as_posix() for p in (root / "sslseg").rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}
    assert data and data <= inside, sorted(data - inside)


def test_relative_sources_are_relative_to_the_config_file(tmp_path, monkeypatch):
    from test_io_errors import CONFIG

    sub = tmp_path / "project"
    sub.mkdir()
    cfg = sub / "config.yaml"
    cfg.write_text(CONFIG + "sources:\n  acdc: data/ACDC\n  promise12: {url: 'https://example.org/p.zip', "
                            "sha256: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'}\n  synth2d: /abs/raw\n")
    monkeypatch.chdir(tmp_path)
    sources = load_config("project/config.yaml")["sources"]
    assert sources == {"acdc": "project/data/ACDC", "synth2d": "/abs/raw",
                       "promise12": {"url": "https://example.org/p.zip", "sha256": 64 * "a"}}
    monkeypatch.chdir(sub)
    assert load_config("config.yaml")["sources"]["acdc"] == "data/ACDC"  # unchanged where the config lives


class _Opaque:  # a pickled object a weights-only load refuses
    pass


@pytest.mark.parametrize("content, needle", [
    (b"", "empty file"),
    (b"this is not a model\n", "not a PyTorch file"),
    ("pickle", "holds Python objects besides tensors"),
    ("torch-object", "holds Python objects besides tensors"),
    ("truncated", "truncated or not a PyTorch archive"),
])
def test_an_unusable_model_file_is_one_plain_line(tmp_path, capsys, prepared, content, needle):
    import pickle

    import torch

    model = tmp_path / "model.pt"
    if content == "pickle":
        model.write_bytes(pickle.dumps(_Opaque()))
    elif content == "torch-object":
        torch.save({"format": 2, "payload": _Opaque()}, model)
    elif content == "truncated":
        torch.save({"format": 2, "w": torch.zeros(1000)}, model)
        model.write_bytes(model.read_bytes()[:1500])
    else:
        model.write_bytes(content)
    out = tmp_path / "pred"
    assert main(["infer", "--model", str(model), "--prepared", str(prepared["synth2d"]), "--out", str(out)]) == 1
    line = _one_error_line(capsys, str(model), needle)
    assert "weights_only" not in line and "\x1b" not in line  # never advise an unsafe load
    assert not out.exists() and not out.with_name(".pred.tmp").exists()


def test_device_and_seed_mistakes_are_one_line(tiny, prepared, tmp_path, capsys, monkeypatch):
    import torch

    from sslseg.config import run_spec, validate

    b = tiny["synth2d"]
    b["schedule"]["iterations"] = 1
    model = fit(b, "supervised", 1, 0, prepared["synth2d"], tmp_path / "run")
    infer = ["infer", "--model", str(model), "--prepared", str(prepared["synth2d"]), "--out", str(tmp_path / "p")]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(infer + ["--device", "cuda"]) == 1
    _one_error_line(capsys, "--device 'cuda'", "sees no CUDA device")
    assert main(infer + ["--device", "gpu7"]) == 1
    _one_error_line(capsys, "--device 'gpu7': not a device name")
    from test_io_errors import _train_args

    assert main(_train_args(_config(tmp_path), tmp_path, prepared=prepared["synth2d"])[:-6] + [
        "--seed", "-1", "--prepared", str(prepared["synth2d"]), "--out", str(tmp_path / "o")]) == 1
    _one_error_line(capsys, "--seed -1: seeds are integers >= 0")
    spec = json.loads(run_spec(validate({"benchmarks": {"t": b}}), "t", "supervised", 1, 0).to_json())
    spec["seed"] = -1
    train = ["train", "--spec", json.dumps(spec), "--prepared", str(prepared["synth2d"]), "--out", str(tmp_path / "o")]
    assert main(train) == 1
    _one_error_line(capsys, "seed must be an integer in [0, 2^32), got -1")


def test_train_into_a_read_only_folder_fails_before_the_work(tiny, prepared, tmp_path, capsys, monkeypatch):
    import tempfile

    import sslseg.train

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    monkeypatch.setattr(sslseg.train, "seed_everything", lambda seed: pytest.fail("training started"))
    b = tiny["synth2d"]
    with pytest.raises(SslsegError, match="o: cannot write the run's files here \\(Read-only file system\\)"):
        fit(b, "supervised", 1, 0, prepared["synth2d"], tmp_path / "o")


def test_nan_in_a_raw_image_is_found(tmp_path, capsys):
    import numpy as np

    raw, out = tmp_path / "raw", tmp_path / "prepared"
    assert main(["download", "--dataset", "synth2d", "--out", str(raw)]) == 0
    path = sorted((raw / "imagesTr").glob("*.nii.gz"))[0]
    img = sitk.ReadImage(str(path), sitk.sitkFloat32)
    arr = sitk.GetArrayFromImage(img)
    arr.flat[arr.size // 2] = np.nan
    bad = sitk.GetImageFromArray(arr)
    bad.CopyInformation(img)
    sitk.WriteImage(bad, str(path))
    assert main(["preprocess", "--dataset", "synth2d", "--raw", str(raw), "--out", str(out)]) == 1
    _one_error_line(capsys, str(path), "NaN or inf")


def test_every_stage_says_what_it_wrote(tiny, prepared, tmp_path, capsys):
    raw, out = tmp_path / "raw", tmp_path / "prepared"
    assert main(["download", "--dataset", "synth2d", "--out", str(raw)]) == 0
    assert main(["preprocess", "--dataset", "synth2d", "--raw", str(raw), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"sslseg download: wrote synth2d from its default source into {raw}")
    assert lines[1].startswith("sslseg preprocess: wrote ") and "train, " in lines[1] and "test) in" in lines[1]
    b = tiny["synth2d"]
    b["schedule"]["iterations"] = 2
    model = fit(b, "supervised", 1, 0, prepared["synth2d"], tmp_path / "run", log_every=1)
    train_lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("[sslseg train]") and " it " in x]
    assert train_lines and all(" s/it eta " in x for x in train_lines)
    assert main(["infer", "--model", str(model), "--prepared", str(prepared["synth2d"]), "--out",
                 str(tmp_path / "pred")]) == 0
    assert capsys.readouterr().out.startswith("sslseg infer: wrote ")
    args, _ = _results(tmp_path / "agg")
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("sslseg aggregate: wrote tables of b in ")


def test_a_model_of_another_dataset_with_the_same_shape_is_refused(tiny, prepared, tmp_path, capsys):
    import torch

    b = tiny["synth2d"]
    b["schedule"]["iterations"] = 1
    model = fit(b, "supervised", 1, 0, prepared["synth2d"], tmp_path / "run")
    ckpt = torch.load(model, weights_only=True)
    assert ckpt["info"]["dataset"] == "synth2d"
    ckpt["info"]["dataset"] = "acdc"  # one channel and four classes, like synth2d
    torch.save(ckpt, tmp_path / "acdc.pt")
    args = ["infer", "--model", str(tmp_path / "acdc.pt"), "--prepared", str(prepared["synth2d"]), "--out",
            str(tmp_path / "pred")]
    assert main(args) == 1
    _one_error_line(capsys, "acdc.pt: trained on 'acdc'", "holds 'synth2d'")


def test_a_hand_edited_spec_without_a_methods_network(tiny, prepared, tmp_path, capsys):
    from sslseg.config import run_spec, validate

    b = dict(tiny["synth2d"], methods=["supervised", "cps"])
    spec = json.loads(run_spec(validate({"benchmarks": {"t": b}}), "t", "cps", 1, 0).to_json())
    del spec["networks"]["second"]
    args = ["train", "--spec", json.dumps(spec), "--prepared", str(prepared["synth2d"]), "--out", str(tmp_path / "o")]
    assert main(args) == 1
    _one_error_line(capsys, "'cps' trains networks ['student', 'second']", "missing ['second']")


# ---------------------------------------------------------------- what else a careful user tries


def test_a_corrupt_nifti_header_is_named(tmp_path):
    import gzip

    import numpy as np

    from sslseg.io import Geometry, read_nifti, write_nifti

    path = tmp_path / "img.nii.gz"
    write_nifti(path, np.zeros((3, 4, 5), np.float32), Geometry((1.0, 1.0, 2.0)))
    data = bytearray(gzip.decompress(path.read_bytes()))
    data[40:42] = (9).to_bytes(2, "little")  # dim[0] = 9: more axes than NIfTI allows
    path.write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(SslsegError, match=r"img.nii.gz: malformed NIfTI \(dim\[0\] = 9\)"):
        read_nifti(path)


def _raw_synth3d(tmp_path):
    raw = tmp_path / "raw"
    assert main(["download", "--dataset", "synth3d", "--out", str(raw)]) == 0
    return raw, sorted((raw / "imagesTr").glob("*.nii.gz"))[0], sorted((raw / "labelsTr").glob("*.nii.gz"))[0]


def test_a_4d_image_and_a_fractional_label_are_named(tmp_path, capsys):
    import numpy as np

    raw, img_path, lab_path = _raw_synth3d(tmp_path)
    capsys.readouterr()
    img = sitk.ReadImage(str(img_path))
    arr = sitk.GetArrayFromImage(img)
    four = sitk.JoinSeries([img, img])  # a time series where a volume is expected
    sitk.WriteImage(four, str(img_path))
    assert main(["preprocess", "--dataset", "synth3d", "--raw", str(raw), "--out", str(tmp_path / "p")]) == 1
    _one_error_line(capsys, str(img_path), "a 4D image; one 3D volume per channel file is expected")
    sitk.WriteImage(img, str(img_path))
    lab = sitk.ReadImage(str(lab_path))
    frac = sitk.GetImageFromArray(sitk.GetArrayFromImage(lab).astype(np.float32) + 0.5)
    frac.CopyInformation(lab)
    sitk.WriteImage(frac, str(lab_path))
    assert main(["preprocess", "--dataset", "synth3d", "--raw", str(raw), "--out", str(tmp_path / "p")]) == 1
    _one_error_line(capsys, str(lab_path), "label values [0.5")
    assert arr.ndim == 3 and not (tmp_path / "p" / "cases").exists()


def test_non_ascii_paths_work(tmp_path, capsys):
    root = tmp_path / "données" / "Ärzte ü"
    raw, out = root / "raw", root / "prepared"
    assert main(["download", "--dataset", "synth2d", "--out", str(raw)]) == 0
    assert main(["preprocess", "--dataset", "synth2d", "--raw", str(raw), "--out", str(out)]) == 0
    assert (out / "cases.csv").is_file()


def test_an_interrupted_download_keeps_the_earlier_one(tmp_path, monkeypatch):
    import zipfile

    import sslseg.data.download as download

    archive = tmp_path / "acdc.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("data/slices/x.h5", b"0" * 1000)
    raw = tmp_path / "raw"
    (raw / "h5").mkdir(parents=True)
    (raw / "h5" / "earlier.txt").write_text("an earlier, complete download\n")

    def interrupted(src, dst, *args, **kwargs):
        open(dst, "wb").write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(download.shutil, "copyfile", interrupted)
    assert main(["download", "--dataset", "acdc", "--source", str(archive), "--out", str(raw)]) == 130
    assert sorted(p.name for p in raw.iterdir()) == ["h5"]  # no .incoming, no partial archive
    assert (raw / "h5" / "earlier.txt").is_file()


def test_a_killed_aggregate_leaves_the_earlier_summary(tmp_path, monkeypatch):
    import os

    import pandas as pd

    args, results = _results(tmp_path)
    assert main(args) == 0
    before = (results / "summary.txt").read_bytes(), os.stat(results / "summary.txt").st_mtime_ns

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_excel", killed)
    assert main(args) == 130
    # summary.txt, the workflow's target, is written last: it still is the earlier one, so Snakemake reruns
    assert ((results / "summary.txt").read_bytes(), os.stat(results / "summary.txt").st_mtime_ns) == before
    assert not [p.name for p in results.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_a_full_disk_at_a_training_checkpoint_is_one_line(tiny, prepared, tmp_path, capsys, monkeypatch):
    import sslseg.train
    from sslseg.config import run_spec, validate

    def full(path, obj):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(sslseg.train, "write_torch", full)
    b = tiny["synth2d"]
    b["schedule"]["iterations"] = 2
    spec = run_spec(validate({"benchmarks": {"t": b}}), "t", "supervised", 1, 0).to_json()
    out = tmp_path / "o"
    assert main(["train", "--spec", spec, "--prepared", str(prepared["synth2d"]), "--out", str(out)]) == 1
    _one_error_line(capsys, str(out / "model.pt"), "No space left on device")


def test_a_3d_model_for_a_2d_benchmark(tiny, prepared, tmp_path, capsys):
    b = tiny["synth3d"]
    b["schedule"]["iterations"] = 1
    model = fit(b, "supervised", 2, 0, prepared["synth3d"], tmp_path / "run")
    out = tmp_path / "pred"
    assert main(["infer", "--model", str(model), "--prepared", str(prepared["synth2d"]), "--out", str(out)]) == 1
    _one_error_line(capsys, str(model), "a 3D model", "cannot predict synth2d (2D")
    assert not out.exists() and not out.with_name(".pred.tmp").exists()


def test_a_diverging_loss_stops_training_naming_the_iteration(tiny, prepared, tmp_path, monkeypatch):
    import torch

    from sslseg.methods.supervised import Supervised

    def diverged(self, batch, step):
        return torch.tensor(float("nan"), requires_grad=True), {}

    monkeypatch.setattr(Supervised, "training_step", diverged)
    with pytest.raises(SslsegError, match="supervised: loss became nan at iteration 0"):
        fit(tiny["synth2d"], "supervised", 1, 0, prepared["synth2d"], tmp_path / "o")


def test_the_workflow_schema_is_the_packages():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    wf, pkg = root / "workflow" / "schemas" / "config.schema.yaml", root / "sslseg" / "schemas" / "config.schema.yaml"
    assert wf.resolve() == pkg.resolve()


def test_weights_that_do_not_fit_are_named_on_one_line(tiny, prepared, tmp_path, capsys):
    import torch

    b = tiny["synth2d"]
    b["schedule"]["iterations"] = 1
    model = fit(b, "supervised", 1, 0, prepared["synth2d"], tmp_path / "run")
    ckpt = torch.load(model, weights_only=True)
    state = ckpt["networks"]["student"]["state_dict"]
    del state[next(iter(state))]
    torch.save(ckpt, model)
    assert main(["infer", "--model", str(model), "--prepared", str(prepared["synth2d"]), "--out",
                 str(tmp_path / "p")]) == 1
    _one_error_line(capsys, str(model), "not a usable sslseg model (Missing key(s) in state_dict")


def test_a_symlink_in_a_zip_is_refused(tmp_path, capsys):
    import stat
    import zipfile

    archive = tmp_path / "links.zip"
    with zipfile.ZipFile(archive, "w") as z:
        info = zipfile.ZipInfo("data/link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(info, "/etc")
    raw = tmp_path / "raw"
    assert main(["download", "--dataset", "acdc", "--source", str(archive), "--out", str(raw)]) == 1
    _one_error_line(capsys, f"{archive}: member 'data/link' is a link; refusing to extract")
    assert not raw.exists()  # a failed first download leaves no empty folder


def test_failures_before_any_output_leave_no_empty_folders(tiny, prepared, tmp_path, capsys, monkeypatch):
    import torch

    assert main(["download", "--dataset", "acdc", "--source", str(tmp_path / "nothere"), "--out",
                 str(tmp_path / "raw")]) == 1
    _one_error_line(capsys, "nothere: source does not exist")
    assert not (tmp_path / "raw").exists()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SslsegError, match="sees no CUDA device"):
        fit(tiny["synth2d"], "supervised", 1, 0, prepared["synth2d"], tmp_path / "o", device="cuda")
    from sslseg.config import run_spec, validate

    spec = json.loads(run_spec(validate({"benchmarks": {"t": tiny["synth2d"]}}), "t", "supervised", 1, 0).to_json())
    spec["budget"] = 99  # a hand-edited specification: found when the data are read
    out = str(tmp_path / "o")
    assert main(["train", "--spec", json.dumps(spec), "--prepared", str(prepared["synth2d"]), "--out", out]) == 1
    _one_error_line(capsys, "no label budget 99")
    assert not (tmp_path / "o").exists()


def test_infer_refuses_a_folder_holding_other_files(tiny, prepared, tmp_path, capsys):
    b = tiny["synth2d"]
    b["schedule"]["iterations"] = 1
    model = fit(b, "supervised", 1, 0, prepared["synth2d"], tmp_path / "run")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    assert main(["infer", "--model", str(model), "--prepared", str(prepared["synth2d"]), "--out", str(out)]) == 1
    _one_error_line(capsys, str(out), "holds other files than predictions (notes.txt)")
    assert (out / "notes.txt").read_text() == "mine\n"


def test_a_full_disk_in_evaluate_names_the_table(tmp_path, capsys, monkeypatch):
    import csv

    prepared, cfg, pred = _prepared(tmp_path), _config(tmp_path), _perfect(tmp_path)

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(csv.DictWriter, "writerows", full)
    assert _evaluate(cfg, pred, prepared, tmp_path / "m" / "metrics.csv") == 1
    _one_error_line(capsys, str(tmp_path / "m" / "metrics.csv"), "No space left on device")
