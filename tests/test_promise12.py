"""PROMISE12: a miniature training_data.zip in the official layout (CaseXX.mhd/.raw + CaseXX_segmentation.mhd/.raw
at the archive root) through download (archive, file:// URL, folder), preprocessing (224 x 224 nearest, per-slice
min-max, CurvatureFlow; ABD's split and first-202-slices budget) and a training run to metrics."""

import json
import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from conftest import fit
from sslseg import SslsegError
from sslseg.cli import main
from sslseg.config import validate
from sslseg.data import DATASETS, load_prepared
from sslseg.data.download import sha256sum
from sslseg.data.promise12 import nearest_resize, preprocess_slices
from sslseg.io import read_case

Z, H, W = 6, 30, 40  # 35 training cases x 6 slices = 210 >= the 202 of the 7-case budget


def write_case(folder, i, rng):
    img = rng.normal(100, 10, (Z, H, W)).astype(np.int16)
    seg = np.zeros((Z, H, W), np.uint8)
    seg[1:5, 10:20, 12:28] = 1
    img[seg == 1] += 60
    for arr, name in ((img, f"Case{i:02d}.mhd"), (seg, f"Case{i:02d}_segmentation.mhd")):
        im = sitk.GetImageFromArray(arr)
        im.SetSpacing((0.625, 0.5, 3.6))
        sitk.WriteImage(im, str(folder / name))  # MetaImage: header + .raw


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("promise12")
    folder = root / "training_data"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(50):
        write_case(folder, i, rng)
    zpath = root / "training_data.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for p in sorted(folder.iterdir()):
            z.write(p, p.name)  # files at the archive root, as on Zenodo
    return zpath, folder


def test_nearest_resize_is_opencv_inter_nearest():
    # 3 -> 4: out[i] = in[floor(i * 3 / 4)] = in[0], in[0], in[1], in[2] (OpenCV's rule, not centre-aligned)
    x = np.array([[[1, 2, 3], [4, 5, 6], [7, 8, 9]]])
    assert nearest_resize(x, 4)[0].tolist() == [[1, 1, 2, 3], [1, 1, 2, 3], [4, 4, 5, 6], [7, 7, 8, 9]]
    # 4 -> 2: in[0], in[2]
    y = np.arange(16).reshape(1, 4, 4)
    assert nearest_resize(y, 2)[0].tolist() == [[0, 2], [8, 10]]


def test_slices_are_min_max_normalised_then_smoothed():
    s = np.zeros((2, 8, 8))
    s[0, :, 4:] = 10.0  # a step edge: min-max gives 0 / 1; CurvatureFlow keeps the range and smooths the edge
    s[1] = 7.0  # constant: 0 (the reference divides by zero)
    out = preprocess_slices(s)
    assert out.dtype == np.float32 and np.all(out[1] == 0)
    ref = sitk.GetArrayFromImage(sitk.CurvatureFlow(sitk.GetImageFromArray(s[0] / 10.0), timeStep=0.125,
                                                    numberOfIterations=5))
    np.testing.assert_allclose(out[0], ref, rtol=1e-6)
    assert 0 <= out[0].min() and out[0].max() <= 1


def test_download_preprocess_and_train_to_metrics(archive, tmp_path, capsys):
    zpath, folder = archive
    spec = DATASETS["promise12"]
    # the pinned SHA-256 is the real archive's: the miniature is refused unless its own digest is given
    with pytest.raises(SslsegError, match="sha256 mismatch"):
        spec.download(str(zpath), tmp_path / "bad")
    digest = sha256sum(zpath)
    assert spec.download(str(zpath), tmp_path / "raw", digest) == {"kind": "mhd", "sha256": digest}
    assert spec.download(zpath.as_uri(), tmp_path / "raw_url", digest)["sha256"] == digest
    assert spec.download(str(folder), tmp_path / "raw_dir")["sha256"] == "not verified (local folder)"
    assert sorted(p.name for p in (tmp_path / "raw" / "mhd").iterdir()) == sorted(p.name for p in folder.iterdir())

    out = tmp_path / "prepared"
    spec.preprocess(spec, tmp_path / "raw", out)
    info, cases = load_prepared(out)
    assert info.n_classes == 2 and info.dims == 2 and info.budgets == (7,)
    train = cases[cases["split"] == "train"]
    assert len(train) == 35 * Z and list(train["case"][:2]) == ["Case00_slice_1", "Case00_slice_2"]
    # the first 202 training slices: cases 0-32 whole (198 slices) and 4 slices of case 33
    assert train["labelled_7"].sum() == 202 and train["labelled_7"].iloc[:202].all()
    assert list(train.loc[train["labelled_7"], "patient"].unique())[-1] == "Case33"
    assert list(cases.loc[cases["split"] == "val", "case"]) == [f"Case{i}" for i in range(35, 40)]
    assert list(cases.loc[cases["split"] == "test", "case"]) == [f"Case{i}" for i in range(40, 50)]
    vol = read_case(out / "cases" / "Case40.h5", n_classes=2)
    assert vol.image.shape == (1, Z, 224, 224) and vol.label.shape == (Z, 224, 224)
    # in-plane spacing scaled by the resize (0.625 x 40 / 224, 0.5 x 30 / 224), slice spacing kept
    np.testing.assert_allclose(vol.geom.spacing, (0.625 * W / 224, 0.5 * H / 224, 3.6))
    raw = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "Case40_segmentation.mhd")))
    np.testing.assert_array_equal(vol.label, nearest_resize(raw))
    assert json.loads((out / "dataset.json").read_text())["preparation"]["budget_slices"] == {"7": 202}

    bench = {"dataset": "promise12", "methods": ["supervised"], "labels": [7], "seeds": [0],
             "model": {"name": "unet", "channels": [4, 8], "dropout": [0.0, 0.0]},
             "schedule": {"iterations": 3, "batch_labelled": 2, "batch_unlabelled": 2, "patch": [224, 224]},
             "validation": {"every": 3}}
    validate({"benchmarks": {"p": bench}})
    model = fit(bench, "supervised", 7, 0, out, tmp_path / "run")
    assert main(["infer", "--model", str(model), "--prepared", str(out), "--out", str(tmp_path / "pred"),
                 "--protocol", "ssl4mis-2d"]) == 0, capsys.readouterr().err
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--prepared", str(out), "--out",
                 str(tmp_path / "metrics.csv"), "--protocol", "ssl4mis-2d"]) == 0, capsys.readouterr().err
    m = pd.read_csv(tmp_path / "metrics.csv")
    assert sorted(m["case"].unique()) == [f"Case{i}" for i in range(40, 50)] and list(m["class_name"].unique()) == ["prostate"]
    # reference voxels on the 224 grid: 4 slices x rows i with floor(i 30 / 224) in 10..19 (i = 75..149: 75) x
    # columns with floor(i 40 / 224) in 12..27 (i = 68..156: 89)
    assert (m["n_ref"] == 4 * 75 * 89).all() and m["dice"].between(0, 1).all()


def test_incomplete_folder_is_refused_naming_the_file(archive, tmp_path):
    _, folder = archive
    partial = tmp_path / "partial"
    partial.mkdir()
    for p in folder.iterdir():
        if p.name != "Case17_segmentation.mhd":
            (partial / p.name).write_bytes(p.read_bytes())
    with pytest.raises(SslsegError, match="1 PROMISE12 file\\(s\\) missing, e.g. Case17_segmentation.mhd"):
        DATASETS["promise12"].download(str(partial), tmp_path / "raw")
    assert not (tmp_path / "raw" / "mhd").exists()


def test_a_segmentation_on_another_grid_is_refused(archive, tmp_path):
    _, folder = archive
    raw = tmp_path / "raw" / "mhd"
    shutil.copytree(folder, raw)
    seg = sitk.ReadImage(str(raw / "Case07_segmentation.mhd"))
    seg.SetOrigin((0.0, 0.0, 12.0))  # shifted by three slices
    sitk.WriteImage(seg, str(raw / "Case07_segmentation.mhd"))
    spec = DATASETS["promise12"]
    with pytest.raises(SslsegError, match=r"Case07_segmentation.mhd: not on the grid of Case07.mhd .*origin"):
        spec.preprocess(spec, tmp_path / "raw", tmp_path / "prepared")
    assert not (tmp_path / "prepared" / "cases").exists()
