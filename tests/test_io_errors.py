"""sslseg.io error handling and geometry, and the one-line error path of the command line."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from sslseg import SslsegError
from sslseg.cli import main
from sslseg.data import DATASETS
from sslseg.data.prepare import write_tables
from sslseg.io import Case, Geometry, atomic_path, read_case, read_nifti, write_case, write_nifti


def _case(shape=(4, 9, 7), seed=0) -> Case:
    rng = np.random.default_rng(seed)
    return Case(rng.random((1,) + shape).astype(np.float32), rng.integers(0, 4, shape).astype(np.uint8),
                Geometry((1.5, 1.25, 5.0)))


def _raw_h5(path, image, label=None, fmt=2):
    """A hand-made prepared case file: ``image`` gets the channel axis; geometry attributes as write_case's."""
    with h5py.File(path, "w") as f:
        if image is not None:
            f.create_dataset("image", data=image[None])
        if label is not None:
            f.create_dataset("label", data=label)
        f.attrs["format"] = fmt
        n = (image if image is not None else label).ndim
        f.attrs["spacing"], f.attrs["origin"], f.attrs["direction"] = [1.0] * n, [0.0] * n, np.eye(n).ravel()


# ---------------------------------------------------------------- read_case

def test_read_case_round_trip(tmp_path):
    c = _case()
    c.geom = Geometry((1.5, 1.25, 5.0), (1.0, -2.0, 3.5), tuple(np.eye(3)[[1, 0, 2]].ravel().tolist()))
    write_case(tmp_path / "a.h5", c)
    back = read_case(tmp_path / "a.h5", n_classes=4)
    np.testing.assert_array_equal(back.image, c.image)
    np.testing.assert_array_equal(back.label, c.label)
    assert back.image.dtype == np.float32 and back.label.dtype == np.uint8
    assert back.geom == c.geom and back.geom.spacing_zyx == (5.0, 1.25, 1.5) and back.source is None
    assert read_case(tmp_path / "a.h5", label=False).label is None
    assert read_case(tmp_path / "a.h5", image=False).image is None


def test_read_case_of_an_older_format_says_to_preprocess_again(tmp_path):
    path = tmp_path / "old.h5"
    _raw_h5(path, np.zeros((3, 3), np.float32), np.zeros((3, 3), np.uint8), fmt=1)
    with pytest.raises(SslsegError, match="older sslseg.*rerun `sslseg preprocess`") as e:
        read_case(path)
    assert str(path) in str(e.value)


def test_read_case_missing_file(tmp_path):
    path = tmp_path / "nope.h5"
    with pytest.raises(SslsegError, match="missing") as e:
        read_case(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("keep", [0.5, 0.999, 100, 0])
def test_read_case_truncated_h5(tmp_path, keep):
    path = tmp_path / "case.h5"
    write_case(path, _case((6, 20, 20)))
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(int(size * keep) if isinstance(keep, float) else keep)
    with pytest.raises(SslsegError, match="corrupt") as e:
        read_case(path)
    assert str(path) in str(e.value)


def test_read_case_random_bytes_and_corrupt_chunks(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(np.random.default_rng(0).bytes(700))
    with pytest.raises(SslsegError) as e:
        read_case(junk)
    assert str(junk) in str(e.value)
    # same size, compressed data overwritten in the middle of the file
    path = tmp_path / "case.h5"
    write_case(path, _case((6, 20, 20)))
    data = bytearray(path.read_bytes())
    n = len(data)
    data[n // 4: 3 * n // 4] = b"\xab" * (3 * n // 4 - n // 4)
    path.write_bytes(bytes(data))
    with pytest.raises(SslsegError) as e:
        read_case(path)
    assert str(path) in str(e.value)


def test_read_case_without_image_or_label(tmp_path):
    path = tmp_path / "noimage.h5"
    _raw_h5(path, None, np.zeros((3, 3), np.uint8))
    with pytest.raises(SslsegError) as e:
        read_case(path)
    assert str(path) in str(e.value)
    path = tmp_path / "nolabel.h5"
    _raw_h5(path, np.zeros((3, 3), np.float32))
    with pytest.raises(SslsegError, match="label") as e:
        read_case(path)
    assert str(path) in str(e.value)
    assert read_case(path, label=False).label is None


def test_read_case_shape_mismatch(tmp_path):
    path = tmp_path / "mismatch.h5"
    _raw_h5(path, np.zeros((4, 5), np.float32), np.zeros((4, 6), np.uint8))
    with pytest.raises(SslsegError, match="shape") as e:
        read_case(path)
    assert str(path) in str(e.value)
    assert "(4, 5)" in str(e.value) and "(4, 6)" in str(e.value)


def test_read_case_label_values_out_of_range(tmp_path):
    path = tmp_path / "labels.h5"
    label = np.zeros((4, 5), np.uint8)
    label[0, 0], label[1, 1], label[2, 2] = 2, 5, 7
    _raw_h5(path, np.zeros((4, 5), np.float32), label)
    with pytest.raises(SslsegError, match=r"outside 0\.\.3") as e:
        read_case(path, n_classes=4)
    assert str(path) in str(e.value)
    assert "[5, 7]" in str(e.value)
    assert read_case(path, n_classes=8).label.max() == 7  # in range for 8 classes
    assert read_case(path).label.max() == 7  # no check without n_classes


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_read_case_non_finite_image(tmp_path, bad):
    path = tmp_path / "nan.h5"
    image = np.zeros((3, 4), np.float32)
    image[1, 2] = bad
    _raw_h5(path, image, np.zeros((3, 4), np.uint8))
    with pytest.raises(SslsegError, match="NaN or inf") as e:
        read_case(path)
    assert str(path) in str(e.value)


# ---------------------------------------------------------------- NIfTI

@pytest.mark.parametrize("name", ["bad.nii.gz", "bad.nii"])
def test_read_nifti_malformed(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(1).bytes(600))
    with pytest.raises(SslsegError, match="malformed NIfTI") as e:
        read_nifti(path)
    assert str(path) in str(e.value)
    assert "\n" not in str(e.value)


def test_read_nifti_missing(tmp_path):
    with pytest.raises(SslsegError, match="missing"):
        read_nifti(tmp_path / "none.nii.gz")


def test_read_nifti_truncated(tmp_path):
    path = tmp_path / "trunc.nii.gz"
    write_nifti(path, np.random.default_rng(0).random((10, 20, 20)).astype(np.float32), _case().geom)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(SslsegError):
        read_nifti(path)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.int16])
def test_nifti_round_trip_keeps_geometry(tmp_path, dtype):
    rng = np.random.default_rng(2)
    array = (rng.random((5, 8, 6)) * 50).astype(dtype)
    theta = 0.3
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    like = Geometry((0.7, 1.5, 5.0), (-10.5, 22.25, 3.0), tuple(rot.ravel().tolist()))
    path = tmp_path / "sub" / "x.nii.gz"
    write_nifti(path, array, like)
    back, geom = read_nifti(path)
    np.testing.assert_array_equal(back, array)
    assert back.dtype == array.dtype
    np.testing.assert_allclose(geom.spacing, like.spacing, rtol=1e-6)
    np.testing.assert_allclose(geom.origin, like.origin, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(geom.direction, like.direction, atol=1e-5)
    assert geom.spacing_zyx == pytest.approx((5.0, 1.5, 0.7), rel=1e-6) and geom.close_to(like)
    assert [p.name for p in path.parent.iterdir()] == ["x.nii.gz"]  # no temporary file left
    # the written file is an ordinary NIfTI for other readers too
    img = sitk.ReadImage(str(path))
    assert img.GetSize() == (6, 8, 5)


def test_nifti_round_trip_2d(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_nifti(tmp_path / "s.nii.gz", array, Geometry((1.25, 0.5)))
    back, geom = read_nifti(tmp_path / "s.nii.gz")
    np.testing.assert_array_equal(back, array)
    np.testing.assert_allclose(geom.spacing, (1.25, 0.5))


# ---------------------------------------------------------------- atomic_path

def test_atomic_path_keeps_original_when_block_raises(tmp_path):
    target = tmp_path / "result.csv"
    target.write_text("original\n")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            assert tmp != target and tmp.parent == target.parent
            tmp.write_text("half-written")
            raise RuntimeError("boom")
    assert target.read_text() == "original\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.csv"]


def test_atomic_path_no_file_when_block_raises(tmp_path):
    target = tmp_path / "new" / "out.nii.gz"
    with pytest.raises(KeyError):
        with atomic_path(target) as tmp:
            assert tmp.name.endswith(".nii.gz")
            raise KeyError("x")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_atomic_path_replaces_on_success(tmp_path):
    target = tmp_path / "result.csv"
    target.write_text("original\n")
    with atomic_path(target) as tmp:
        tmp.write_text("new\n")
        assert target.read_text() == "original\n"  # untouched until the block ends
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.csv"]


# ---------------------------------------------------------------- CLI error path

CONFIG = """\
targets: [b]
benchmarks:
  b:
    dataset: synth2d
    methods: [supervised, mean_teacher]
    labels: [1]
    seeds: [0]
"""


def _config(tmp_path, text=CONFIG):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text)
    return cfg


def _one_error_line(capsys, *needles) -> str:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("sslseg "), err
    assert "error" in lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def _train_args(cfg, tmp_path, bench="b", method="supervised", prepared=None):
    return ["train", "--config", str(cfg), "--bench", bench, "--method", method, "--labels", "1", "--seed", "0",
            "--prepared", str(prepared if prepared is not None else tmp_path), "--out", str(tmp_path / "o")]


def test_cli_unknown_config_key(tmp_path, capsys):
    cfg = _config(tmp_path, CONFIG + "colour: blue\n")
    assert main(_train_args(cfg, tmp_path, bench="x")) == 1
    line = _one_error_line(capsys, str(cfg), "colour")
    assert line.startswith("sslseg train: error: ")
    assert not (tmp_path / "o").exists()


def test_cli_unknown_method_in_benchmark(tmp_path, capsys):
    cfg = _config(tmp_path, CONFIG.replace("[supervised, mean_teacher]", "[supervised, mean_teachr]"))
    assert main(_train_args(cfg, tmp_path)) == 1
    _one_error_line(capsys, "mean_teachr", "benchmarks/b/methods", "mean_teacher")


def test_cli_unknown_benchmark(tmp_path, capsys):
    cfg = _config(tmp_path)
    assert main(_train_args(cfg, tmp_path, bench="nosuch")) == 1
    _one_error_line(capsys, "nosuch")


def test_cli_missing_config(tmp_path, capsys):
    assert main(_train_args(tmp_path / "absent.yaml", tmp_path)) == 1
    _one_error_line(capsys, "absent.yaml")


def test_cli_missing_prepared_folder(tmp_path, capsys):
    cfg = _config(tmp_path)
    prepared = tmp_path / "prepared" / "synth2d"
    assert main(_train_args(cfg, tmp_path, prepared=prepared)) == 1
    _one_error_line(capsys, str(prepared), "missing")
    assert not (tmp_path / "o" / "model.pt").exists()


def test_cli_unknown_method_on_command_line(tmp_path, capsys):
    """The method is checked against the registry when the prepared data exist."""
    prepared = _prepared(tmp_path)
    cfg = _config(tmp_path)
    assert main(_train_args(cfg, tmp_path, method="noisy_student", prepared=prepared)) == 1
    _one_error_line(capsys, "noisy_student")


def _prepared(tmp_path):
    """A hand-made prepared synth2d folder with two test volumes."""
    spec = DATASETS["synth2d"]
    out = tmp_path / "prepared"
    rng = np.random.default_rng(5)
    rows = []
    for cid in ("synth2d_t0", "synth2d_t1"):
        label = np.zeros((3, 12, 10), np.uint8)
        label[:, 2:6, 2:6] = 1
        label[:, 6:9, 3:8] = 2
        label[1:, 8:11, 1:4] = 3
        image = (label / 3 + 0.1 * rng.random(label.shape)).astype(np.float32)
        write_case(out / "cases" / f"{cid}.h5", Case(image[None], label, Geometry((1.5, 1.5, 6.5))))
        rows.append(dict(case=cid, patient=cid, split="test", shape=label.shape, spacing=(6.5, 1.5, 1.5)))
    write_tables(spec, out, rows, {"source": "test"})
    return out


def _perfect(tmp_path):
    """Predictions equal to the references of ``_prepared``'s cases, in tmp_path/pred."""
    pred = tmp_path / "pred"
    for cid in ("synth2d_t0", "synth2d_t1"):
        ref = read_case(tmp_path / "prepared" / "cases" / f"{cid}.h5")
        write_nifti(pred / f"{cid}.nii.gz", ref.label, ref.geom)
    return pred


def _evaluate(cfg, pred, prepared, out):
    return main(["evaluate", "--config", str(cfg), "--bench", "b", "--pred", str(pred), "--prepared", str(prepared),
                 "--out", str(out)])


def test_cli_evaluate_ok_then_malformed_prediction(tmp_path, capsys):
    prepared, cfg, pred = _prepared(tmp_path), _config(tmp_path), _perfect(tmp_path)
    out = tmp_path / "metrics.csv"
    # positive control: perfect predictions evaluate cleanly
    assert _evaluate(cfg, pred, prepared, out) == 0
    assert capsys.readouterr().err == ""
    df = pd.read_csv(out)
    assert len(df) == 2 * 3
    assert (df["dice"] == 1.0).all() and (df["hd95"] == 0.0).all() and (df["status"] == "ok").all()
    assert (df["unit"] == "mm").all()

    bad = pred / "synth2d_t1.nii.gz"
    bad.write_bytes(np.random.default_rng(9).bytes(512))
    out2 = tmp_path / "metrics2.csv"
    assert _evaluate(cfg, pred, prepared, out2) == 1
    _one_error_line(capsys, str(bad), "malformed NIfTI")
    assert not out2.exists()


def test_cli_evaluate_missing_and_misshapen_predictions(tmp_path, capsys):
    prepared = _prepared(tmp_path)
    cfg = _config(tmp_path)
    pred = tmp_path / "pred"
    ref = read_case(prepared / "cases" / "synth2d_t0.h5")
    write_nifti(pred / "synth2d_t0.nii.gz", ref.label, ref.geom)
    assert _evaluate(cfg, pred, prepared, tmp_path / "m.csv") == 1
    _one_error_line(capsys, "synth2d_t1", str(pred))
    write_nifti(pred / "synth2d_t1.nii.gz", ref.label[:, :-1], ref.geom)
    assert _evaluate(cfg, pred, prepared, tmp_path / "m.csv") == 1
    _one_error_line(capsys, "synth2d_t1.nii.gz", "shape")
    assert not (tmp_path / "m.csv").exists()


@pytest.mark.parametrize("defect, needle", [
    ("float", "label map of integers"),
    ("range", "outside 0..3"),
    ("origin", "geometry"),
    ("spacing", "geometry"),
])
def test_cli_evaluate_refuses_a_prediction_that_is_not_a_label_map_on_the_reference_grid(tmp_path, capsys, defect,
                                                                                          needle):
    prepared, cfg, pred = _prepared(tmp_path), _config(tmp_path), _perfect(tmp_path)
    ref = read_case(prepared / "cases" / "synth2d_t1.h5")
    arr, geom = ref.label, ref.geom
    if defect == "float":
        arr = arr.astype(np.float32) + 0.4
    elif defect == "range":
        arr = arr + 4
    else:
        geom = Geometry((1.5, 1.5, 3.0) if defect == "spacing" else geom.spacing, (5.0, 0.0, 0.0))
    write_nifti(pred / "synth2d_t1.nii.gz", arr, geom)
    assert _evaluate(cfg, pred, prepared, tmp_path / "m.csv") == 1
    _one_error_line(capsys, "synth2d_t1.nii.gz", needle)
    assert not (tmp_path / "m.csv").exists()


def test_cli_train_on_the_prepared_folder_of_another_dataset(tmp_path, capsys, prepared):
    cfg = _config(tmp_path)
    assert main(_train_args(cfg, tmp_path, prepared=prepared["synth3d"])) == 1
    _one_error_line(capsys, str(prepared["synth3d"]), "'synth3d'", "'synth2d'")


def test_written_files_follow_the_umask_not_mkstemps_0600(tmp_path):
    from sslseg.io import write_json, write_torch

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        write_torch(tmp_path / "b.pt", {"x": 1})
        os.umask(0o007)
        write_json(tmp_path / "c.json", {"x": 1})
    finally:
        os.umask(old)
    modes = [(tmp_path / n).stat().st_mode & 0o777 for n in ("a.json", "b.pt", "c.json")]
    assert modes == [0o644, 0o644, 0o660]


def test_evaluate_starts_without_torch_pandas_or_the_config_reader(tmp_path):
    """A short stage imports what it uses: evaluate given its settings as flags (as the workflow calls it) loads
    neither torch, pandas nor the config schema."""
    import subprocess
    import sys

    prepared, pred = _prepared(tmp_path), _perfect(tmp_path)
    code = ("import sys; from sslseg.cli import main; "
            f"rc = main(['evaluate', '--pred', {str(pred)!r}, '--prepared', {str(prepared)!r}, "
            f"'--out', {str(tmp_path / 'm.csv')!r}, '--protocol', 'strict', '--empty-policy', 'penalty']); "
            "print(rc, sorted(m for m in ('torch', 'pandas', 'jsonschema', 'sslseg.config') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[-2] == "0 []"
    assert pd.read_csv(tmp_path / "m.csv")["dice"].tolist() == [1.0] * 6
