"""WORD in DuoMod-Net's convention: a miniature of the AES-encrypted ``WORD-V0.1.0.zip`` in its layout
(``WORD-V0.1.0/{imagesTr,labelsTr,imagesVal,labelsVal,imagesTs}``) and of ``WORD_V0.1.0_labelsTs.zip`` through
download (encrypted zip with its SHA-256 and the test labels beside it, folder, file:// URL; a wrong labels zip and
a missing case refused by name), preprocessing (1.5 x 1.5 x 2 mm, label 16 merged into 15 also in the labels kept
for scoring, the seeded split and its budgets), a run to metrics on the original grids, and the benchmark's DAG."""

import zipfile

import numpy as np
import pytest

from sslseg import SslsegError
from sslseg.cli import main
from sslseg.data import DATASETS, load_prepared, read_split, word
from sslseg.data.download import sha256sum
from sslseg.io import Geometry, read_case, read_nifti, write_nifti

SPLITS = ("train", "val", "test")
SHAPE = (4, 16, 16)  # z, y, x at 0.75 x 0.75 x 4 mm: 8 x 8 x 8 at 1.5 x 1.5 x 2


def _volume(i):
    hu = np.full(SHAPE, -1000.0, np.float32)
    lab = np.zeros(SHAPE, np.uint8)
    lab[1:3, 3:11, 3:9] = 1  # liver
    lab[1:3, 12:14, 2:4] = 15  # left femoral head
    lab[1:3, 12:14, 12:14] = 16  # right femoral head
    lab[2, 6:8, 11:13] = 6 + i % 2  # gallbladder or esophagus
    hu[lab > 0] = 50 + 5 * lab[lab > 0]
    return hu, lab


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    import pyzipper

    root = tmp_path_factory.mktemp("word")
    top = root / "WORD-V0.1.0"
    labels_ts = root / "labels" / "labelsTs"
    parts = {"train": "Tr", "val": "Val", "test": "Ts"}
    for split in SPLITS:
        for i, cid in enumerate(read_split("word", split)):
            hu, lab = _volume(i)
            g = Geometry((0.75, 0.75, 4.0), (-100.0, 20.0, 7.0))
            write_nifti(top / f"images{parts[split]}" / f"{cid}.nii.gz", hu, g)
            write_nifti((labels_ts if split == "test" else top / f"labels{parts[split]}") / f"{cid}.nii.gz", lab, g)
    zpath = root / "dl" / word.ARCHIVE
    zpath.parent.mkdir()
    with pyzipper.AESZipFile(zpath, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES) as z:
        z.setpassword(word.PASSWORD.encode())
        for p in sorted(top.rglob("*.nii.gz")):
            z.write(p, p.relative_to(root).as_posix())
    lpath = zpath.parent / word.LABELS_TS
    with zipfile.ZipFile(lpath, "w") as z:  # WORD's labels zip: labelsTs/word_XXXX.nii.gz
        for p in sorted(labels_ts.iterdir()):
            z.write(p, f"labelsTs/{p.name}")
    return zpath, lpath, top, labels_ts


def test_split_is_the_official_test_set_and_a_seeded_draw():
    ids = {s: read_split("word", s) for s in SPLITS}
    assert [len(ids[s]) for s in SPLITS] == [100, 20, 30]
    assert sorted(c for s in SPLITS for c in ids[s]) == [f"word_{i:04d}" for i in range(1, 151)]
    # the member names of WORD_V0.1.0_labelsTs.zip (sha256 0552b1e2...)
    assert ids["test"][:4] == ["word_0014", "word_0016", "word_0017", "word_0019"] and ids["test"][-1] == "word_0131"
    rest = [f"word_{i:04d}" for i in range(1, 151) if f"word_{i:04d}" not in ids["test"]]
    order = np.random.default_rng(2022).permutation(120)  # workflow/scripts/make_splits.py
    assert ids["val"] == [rest[i] for i in order[:20]]


def test_the_encrypted_release_is_read_and_checked(release, tmp_path, monkeypatch):
    zpath, lpath, top, labels_ts = release
    spec = DATASETS["word"]
    with pytest.raises(SslsegError, match="distributed through Google Drive"):
        spec.download("", tmp_path / "none")
    with pytest.raises(SslsegError, match=f"sha256 mismatch .*not the official {word.ARCHIVE}"):
        spec.download(str(zpath), tmp_path / "bad")
    # the test labels beside the zip are checked against their pinned digest too
    with pytest.raises(SslsegError, match=f"sha256 mismatch .*not the official {word.LABELS_TS}"):
        spec.download(str(zpath), tmp_path / "bad", sha256=sha256sum(zpath))
    assert not (tmp_path / "bad").exists()
    monkeypatch.setattr(word, "LABELS_TS_SHA256", sha256sum(lpath))
    facts = spec.download(str(zpath), tmp_path / "raw", sha256=sha256sum(zpath))
    assert facts["cases"] == 150 and facts["sha256"] == sha256sum(zpath)
    assert spec.download(zpath.parent.as_uri(), tmp_path / "raw_dir", sha256=sha256sum(zpath))["cases"] == 150
    # the unpacked release with the labels put into it: not verifiable, nothing fetched
    (top / "labelsTs").symlink_to(labels_ts, target_is_directory=True)
    try:
        assert spec.download(str(top), tmp_path / "raw_tree")["sha256"] == "not verified (local folder)"
        victim = read_split("word", "test")[3]
        (labels_ts / f"{victim}.nii.gz").rename(tmp_path / "aside.nii.gz")
        try:
            with pytest.raises(SslsegError, match=f"no image and label for {victim} \\(1 of the 150"):
                spec.download(str(top), tmp_path / "raw_tree")
        finally:
            (tmp_path / "aside.nii.gz").rename(labels_ts / f"{victim}.nii.gz")
    finally:
        (top / "labelsTs").unlink()
    assert len(list((tmp_path / "raw_tree" / "cases" / "labelsTr").iterdir())) == 150  # the earlier one stays


def test_a_zip_without_its_password_is_one_line(release, tmp_path):
    from sslseg.data.download import extract

    with pytest.raises(SslsegError, match=f"{release[0].name}: could not be (decrypted|read)"):
        extract(release[0], tmp_path / "x")
    with pytest.raises(SslsegError, match="could not be decrypted"):
        extract(release[0], tmp_path / "y", password="wrong")


def test_preprocess_merges_the_femoral_heads_and_a_run_reaches_metrics(release, tmp_path, monkeypatch, capsys):
    zpath, lpath, _, _ = release
    spec = DATASETS["word"]
    monkeypatch.setattr(word, "LABELS_TS_SHA256", sha256sum(lpath))
    spec.download(str(zpath), tmp_path / "raw", sha256=sha256sum(zpath))
    out = tmp_path / "prepared"
    spec.preprocess(spec, tmp_path / "raw", out)
    info, cases = load_prepared(out)
    assert info.n_classes == 16 and info.tail == word.TAIL and info.budgets == (2, 5, 10)
    train = cases[cases["split"] == "train"]
    assert train.loc[train["labelled_5"], "case"].tolist() == read_split("word", "train")[:5]
    test_id = read_split("word", "test")[0]
    case = read_case(out / "cases" / f"{test_id}.h5", original=True, n_classes=16)
    assert case.image.shape == (1, 8, 8, 8) and set(np.unique(case.label)) <= {0, 1, 6, 7, 15}
    assert 15 in case.label and 16 not in case.label_orig and (case.label_orig == 15).sum() == 16

    bench = {"dataset": "word", "methods": ["supervised"], "labels": [2], "seeds": [0], "protocol": "duomod",
             "model": {"name": "unet", "channels": [4, 8], "dropout": [0.0, 0.0]},
             "schedule": {"iterations": 2, "batch_labelled": 1, "batch_unlabelled": 1, "patch": [8, 8, 8]},
             "validation": {"every": 2, "batch_size": 4}, "inference": {"batch_size": 4}}
    from conftest import fit

    model = fit(bench, "supervised", 2, 0, out, tmp_path / "run")
    assert main(["infer", "--model", str(model), "--prepared", str(out), "--out", str(tmp_path / "pred"),
                 "--protocol", "duomod"]) == 0, capsys.readouterr().err
    pred, g = read_nifti(tmp_path / "pred" / f"{test_id}.nii.gz")
    assert pred.shape == SHAPE and g.spacing == (0.75, 0.75, 4.0) and g.origin == (-100.0, 20.0, 7.0)
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--prepared", str(out), "--out",
                 str(tmp_path / "m.csv"), "--protocol", "duomod"]) == 0, capsys.readouterr().err
    import pandas as pd

    m = pd.read_csv(tmp_path / "m.csv")
    assert len(m) == 30 * 15 and set(m["class_name"]) >= {"femur_head", "rectum"} and set(m["unit"]) == {"mm"}


def test_the_word_benchmark_builds_its_dag(release, tmp_path):
    import yaml

    from test_workflow import REPO, job_counts, smk

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    bench = {k: v for k, v in cfg["benchmarks"].items() if k in ("amos", "word")}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({
        "targets": ["word"], "benchmarks": bench, "sources": {"word": str(release[0])}}))
    out = smk(tmp_path, "-n", "-p", "results/word/summary.txt").stdout
    counts = job_counts(out)
    assert counts["train"] == 6 * 3 * 3 and counts["download"] == 1
    duo = next(line for line in out.splitlines() if "--out results/word/duomod/l10/seed2" in line)
    assert '"iterations":24500' in duo and "--protocol duomod" in out
