"""Pancreas-NIH in the CoraNet convention (BCP, Hsu & Hua): a miniature of TCIA's release in its layout (an NBIA
download ``Pancreas-CT/PANCREAS_00XX/<study>/<series>/1-00k.dcm`` and the label zip of ``label00XX.nii.gz``) through
download (folder, file:// URL, zip; the label zip's pinned SHA-256), preprocessing (slice order, the label on the
stack, 1 mm, HU window, CoraNet's crop: by hand on one case) and evaluation."""

import locale
import zipfile

import numpy as np
import pytest

from sslseg import SslsegError
from sslseg.cli import main
from sslseg.data import DATASETS, load_prepared, pancreas, read_split
from sslseg.io import Geometry, read_case, write_nifti

SPLITS = ("train", "val", "test")
SHAPE = (6, 16, 20)  # slices, rows, columns
PIXEL = 0.5  # mm in-plane; slices 1 mm apart: at 1 mm the new voxel j sits exactly on old voxel 2j


def _ids():
    return [c for s in SPLITS for c in read_split("pancreas", s)]


def _volume(i):
    """HU volume and label (z, y, x) of case i: air, soft tissue at 75 HU, the pancreas at 300 HU."""
    hu = np.full(SHAPE, -1000, np.int16)
    hu[:, 2:14, 2:18] = 75
    label = np.zeros(SHAPE, np.uint8)
    label[2:4, 4:10, 6:14 + i % 2] = 1
    hu[label == 1] = 300
    return hu, label


def _write_series(folder, hu, descending):
    saved = locale.setlocale(locale.LC_ALL)  # GDCM sets the process's locale to "C"
    try:
        _write_slices(folder, hu, descending)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _write_slices(folder, hu, descending):
    import SimpleITK as sitk

    folder.mkdir(parents=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(hu.shape[0]):
        sl = sitk.GetImageFromArray(hu[k][None])
        sl.SetSpacing((PIXEL, PIXEL, 1.0))
        z = (40.0 - k) if descending else (-20.0 + k)
        for tag, v in {"0008|0060": "CT", "0020|000e": "1.2.826.0.1.3680043.2.1125.7", "0020|0013": str(k + 1),
                       "0020|0032": f"-30\\-40\\{z}", "0020|0037": "1\\0\\0\\0\\1\\0"}.items():
            sl.SetMetaData(tag, v)
        writer.SetFileName(str(folder / f"1-{k + 1:03d}.dcm"))
        writer.Execute(sl)


@pytest.fixture(scope="module")
def nbia(tmp_path_factory):
    root = tmp_path_factory.mktemp("tcia")
    labels = tmp_path_factory.mktemp("labels")
    for i, cid in enumerate(_ids()):
        hu, label = _volume(i)
        n = cid.rsplit("_", 1)[1]
        _write_series(root / "Pancreas-CT" / cid / f"11-24-2015-PANCREAS{n}-Pancreas-1" / "Pancreas-2", hu, i % 2 == 1)
        write_nifti(labels / f"label{n}.nii.gz", label, Geometry((1.0, 1.0, 1.0)))  # header unlike the CT's
    with zipfile.ZipFile(root / "TCIA_pancreas_labels-02-05-2017-1.zip", "w") as z:
        for p in sorted(labels.iterdir()):
            z.write(p, f"TCIA_pancreas_labels-02-05-2017/{p.name}")
    return root, labels


def test_coranet_split_is_frozen():
    assert [len(read_split("pancreas", s)) for s in SPLITS] == [56, 6, 18]
    ids = _ids()
    assert len(set(ids)) == 80 and "PANCREAS_0025" not in ids and "PANCREAS_0070" not in ids
    assert read_split("pancreas", "train")[:12] == [f"PANCREAS_{i:04d}" for i in range(1, 13)]
    assert read_split("pancreas", "val") == [f"PANCREAS_{i:04d}" for i in range(58, 64)]
    assert read_split("pancreas", "test")[0] == "PANCREAS_0064" and read_split("pancreas", "test")[-1] == \
        "PANCREAS_0082"


def test_crop_box_by_hand():
    lab = np.zeros((30, 200, 200), np.uint8)
    lab[10:20, 5:40, 100:190] = 1
    # z: 10..20 +- 25 clipped to 0..30, shorter than 96 and the axis too: the whole axis
    # y: 5..40 -> 0..65 (clipped), 31 short of 96: 15 / 16 each side -> -15..81, shifted right -> 0..96
    # x: 100..190 -> 75..200 (clipped), already 125 wide
    assert pancreas.crop_box(lab) == (slice(0, 30), slice(0, 96), slice(75, 200))
    lab = np.zeros((200, 200, 200), np.uint8)
    lab[100:110, 180:190, 50:60] = 1  # 60 wide after the margin: 18 + 18 -> 57..153; y shifted left: 104..200
    assert pancreas.crop_box(lab) == (slice(57, 153), slice(104, 200), slice(7, 103))


def test_download_checks_the_label_zip_and_keeps_earlier_downloads(nbia, tmp_path, monkeypatch):
    root, labels = nbia
    spec = DATASETS["pancreas"]
    with pytest.raises(SslsegError, match=r"TCIA_pancreas_labels-02-05-2017-1.zip: sha256 mismatch"):
        spec.download(str(root), tmp_path / "bad")  # the pinned digest is the real archive's
    assert not (tmp_path / "bad").exists()
    from sslseg.data.download import sha256sum

    monkeypatch.setattr(pancreas, "LABELS_SHA256", sha256sum(root / "TCIA_pancreas_labels-02-05-2017-1.zip"))
    facts = spec.download(str(root), tmp_path / "raw")
    assert facts["kind"] == "dicom" and facts["labels_sha256"] == pancreas.LABELS_SHA256
    assert "not verified" in facts["images"] and facts["sha256"] == "not verified (local folder)"
    assert len(list((tmp_path / "raw" / "pancreas" / "dicom").iterdir())) == 80
    assert spec.download(root.as_uri(), tmp_path / "raw_url")["kind"] == "dicom"
    whole = tmp_path / "whole.zip"
    with zipfile.ZipFile(whole, "w") as z:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                z.write(p, p.relative_to(root.parent).as_posix())
    assert len(spec.download(str(whole), tmp_path / "raw_zip")["sha256"]) == 64
    # unpacked label files instead of the zip: accepted, recorded as not verified
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    (unpacked / "Pancreas-CT").symlink_to(root / "Pancreas-CT")
    (unpacked / "labels").symlink_to(labels)
    assert spec.download(str(unpacked), tmp_path / "raw_unpacked")["labels_sha256"].startswith("not verified")
    # a case missing: one line naming it; the earlier download stays
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "TCIA_pancreas_labels-02-05-2017-1.zip").symlink_to(root / "TCIA_pancreas_labels-02-05-2017-1.zip")
    for case in (root / "Pancreas-CT").iterdir():
        if case.name != "PANCREAS_0033":
            (partial / case.name).symlink_to(case)
    with pytest.raises(SslsegError, match=r"no DICOM series for PANCREAS_0033 \(1 of the 80 cases missing\)"):
        spec.download(str(partial), tmp_path / "raw")
    assert len(list((tmp_path / "raw" / "pancreas" / "dicom").iterdir())) == 80
    with pytest.raises(SslsegError, match="NBIA Data Retriever"):
        spec.download("", tmp_path / "none")


def test_preprocess_by_hand_and_evaluate(nbia, tmp_path, monkeypatch, capsys):
    root, _ = nbia
    from sslseg.data.download import sha256sum

    monkeypatch.setattr(pancreas, "LABELS_SHA256", sha256sum(root / "TCIA_pancreas_labels-02-05-2017-1.zip"))
    monkeypatch.setattr(pancreas, "MARGIN", 1)
    monkeypatch.setattr(pancreas, "MIN_CROP", 4)
    spec = DATASETS["pancreas"]
    spec.download(str(root), tmp_path / "raw")
    out = tmp_path / "prepared"
    spec.preprocess(spec, tmp_path / "raw", out)
    info, cases = load_prepared(out)
    assert info.budgets == (6, 12) and list(cases["split"].value_counts()[list(SPLITS)]) == [56, 6, 18]
    train = cases[cases["split"] == "train"]
    assert train.loc[train["labelled_6"], "case"].tolist() == [f"PANCREAS_{i:04d}" for i in range(1, 7)]
    # PANCREAS_0002 (index 1: slices stored top-down, pancreas x 6..14): at 1 mm the grid keeps the 6 slices and
    # takes every other row and column (8 x 10); the pancreas rows 4..9 -> 2..4, columns 6..14 -> 3..7, slices
    # 2..3; CoraNet's box +-1 voxel: slices 1..4, rows 1..5, columns 2..8 (each at least 4 wide)
    case = read_case(out / "cases" / "PANCREAS_0002.h5", n_classes=2)
    assert case.image.shape == (1, 4, 5, 7) and case.geom.spacing == (1.0, 1.0, 1.0)
    expected = np.zeros((4, 5, 7), np.uint8)
    expected[1:3, 1:4, 1:6] = 1
    np.testing.assert_array_equal(case.label, expected)
    # HU -1000 / 75 / 300 -> clipped to [-125, 275] -> min-max: 0 / 0.5 / 1 (rows and columns 2 and up are tissue)
    img = case.image[0]
    assert img[case.label == 1].min() == 1.0 and img[0, 0, 0] == 0.5 and set(np.unique(img)) <= {0.0, 0.5, 1.0}
    # the crop's origin: (-30, -40) in-plane + (2, 1) voxels at 1 mm; slices run downwards from z = 40: z = 39
    np.testing.assert_allclose(case.geom.origin, (-28.0, -39.0, 39.0))
    assert case.geom.direction[-1] == -1.0
    up = read_case(out / "cases" / "PANCREAS_0001.h5", n_classes=2)
    assert up.geom.origin[2] == -19.0 and up.geom.direction[-1] == 1.0 and up.image.shape == (1, 4, 5, 6)
    for t in read_split("pancreas", "test"):
        c = read_case(out / "cases" / f"{t}.h5", n_classes=2)
        (tmp_path / "pred").mkdir(exist_ok=True)
        from sslseg.io import write_nifti as wn

        wn(tmp_path / "pred" / f"{t}.nii.gz", c.label, c.geom)
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--prepared", str(out), "--out",
                 str(tmp_path / "m.csv"), "--protocol", "strict"]) == 0, capsys.readouterr().err
    import pandas as pd

    m = pd.read_csv(tmp_path / "m.csv")
    assert len(m) == 18 and (m["dice"] == 1).all()


def test_bad_labels_are_one_line_naming_the_file(nbia, tmp_path):
    root, _ = nbia
    saved = locale.setlocale(locale.LC_ALL)
    src = tmp_path / "PANCREAS_0001"
    hu, label = _volume(0)
    _write_series(src, hu, False)
    write_nifti(tmp_path / "short.nii.gz", label[:5], Geometry((1.0, 1.0, 1.0)))
    with pytest.raises(SslsegError, match=r"short.nii.gz: label array \(5, 16, 20\) does not match the 6-slice DICOM stack"):
        pancreas.read_dicom_case(src, tmp_path / "short.nii.gz")
    write_nifti(tmp_path / "two.nii.gz", label * 2, Geometry((1.0, 1.0, 1.0)))
    with pytest.raises(SslsegError, match=r"two.nii.gz: label values \[2\]; expected 0 and 1"):
        pancreas.read_dicom_case(src, tmp_path / "two.nii.gz")
    assert locale.setlocale(locale.LC_ALL) == saved  # reading DICOM leaves the locale as it was
    (src / "1-003.dcm").write_bytes(b"not dicom")
    with pytest.raises(SslsegError, match=r"1-003.dcm: not a readable DICOM slice"):
        pancreas.read_dicom_case(src, tmp_path / "two.nii.gz")


def test_the_pancreas_benchmark_builds_its_dag_from_a_local_release(nbia, tmp_path):
    import yaml

    from test_workflow import REPO, job_counts, smk

    root, _ = nbia
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({
        "targets": ["pancreas"], "benchmarks": {"pancreas": cfg["benchmarks"]["pancreas"]},
        "sources": {"pancreas": str(root)}}))
    out = smk(tmp_path, "-n", "-p", "results/pancreas/summary.txt").stdout
    counts = job_counts(out)
    assert counts["train"] == counts["infer"] == counts["evaluate"] == 6 * 1 * 3 and counts["download"] == 1
    bcp = next(line for line in out.splitlines() if "--out results/pancreas/bcp/l12/seed2" in line)
    assert '"optimizer":"adam"' in bcp and '"pretrain":0.2647058823529412' in bcp and '"poly_power":0.0' in bcp
    egm = next(line for line in out.splitlines() if "--out results/pancreas/egm_dt/l12/seed0" in line)
    assert '"name":"egm_vnet"' in egm and '"normalization":"instancenorm"' in egm
    assert '"conv_dropout":[0.4,0.5]' in egm
    assert '"mix_dice_weight":0.42' in egm and '"pretrain_dice_weight":0.55' in egm and 'dice_weight' not in bcp
    assert "--protocol bcp-pancreas" in out
