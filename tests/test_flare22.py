"""FLARE22's 50 public labelled CTs: a miniature of ``FLARE22Train.zip`` in its layout (``FLARE22Train/images``,
``labels``) through download (zip with its SHA-256, folder, file:// URL; a missing case refused by name),
preprocessing (1.5 x 1.5 x 2 mm, nearest labels, the seeded split and its budgets) and the benchmark's DAG."""

import zipfile

import numpy as np
import pytest

from sslseg import SslsegError
from sslseg.data import DATASETS, flare22, load_prepared, read_split
from sslseg.data.download import sha256sum
from sslseg.io import Geometry, read_case, write_nifti

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("flare")
    top = root / "FLARE22Train"
    for i in range(1, 51):
        cid = f"FLARE22_Tr_{i:04d}"
        hu = np.full((6, 16, 16), -900.0, np.float32)
        lab = np.zeros((6, 16, 16), np.uint8)
        lab[1:4, 4:12, 3:9] = 1
        lab[2:4, 6:8, 10:12] = 9 + i % 2
        hu[lab > 0] = 100
        g = Geometry((0.75, 0.75, 2.0))
        write_nifti(top / "images" / f"{cid}_0000.nii.gz", hu, g)
        write_nifti(top / "labels" / f"{cid}.nii.gz", lab, g)
    zpath = root / "FLARE22Train.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for p in sorted(top.rglob("*")):
            z.write(p, p.relative_to(root).as_posix())
    return zpath, top


def test_split_is_the_seeded_draw():
    ids = [c for s in SPLITS for c in read_split("flare22", s)]
    assert [len(read_split("flare22", s)) for s in SPLITS] == [35, 5, 10]
    assert sorted(ids) == [f"FLARE22_Tr_{i:04d}" for i in range(1, 51)]
    order = np.random.default_rng(2022).permutation(50)  # workflow/scripts/make_splits.py
    assert read_split("flare22", "test") == [f"FLARE22_Tr_{i + 1:04d}" for i in order[:10]]


def test_download_and_preprocess(release, tmp_path):
    zpath, top = release
    spec = DATASETS["flare22"]
    with pytest.raises(SslsegError, match="not the official FLARE22Train.zip"):
        spec.download(str(zpath), tmp_path / "bad")
    assert spec.download(str(zpath), tmp_path / "raw", sha256=sha256sum(zpath))["cases"] == 50
    assert spec.download(top.as_uri(), tmp_path / "raw_url")["sha256"] == "not verified (local folder)"
    (top / "labels" / "FLARE22_Tr_0042.nii.gz").rename(tmp_path / "aside.nii.gz")
    try:
        with pytest.raises(SslsegError, match=r"no image and label for FLARE22_Tr_0042 \(1 of the 50 cases"):
            spec.download(str(top), tmp_path / "raw")
    finally:
        (tmp_path / "aside.nii.gz").rename(top / "labels" / "FLARE22_Tr_0042.nii.gz")
    out = tmp_path / "prepared"
    spec.preprocess(spec, tmp_path / "raw", out)
    info, cases = load_prepared(out)
    assert info.n_classes == 14 and info.tail == flare22.TAIL and info.budgets == (2, 4, 7)
    train = cases[cases["split"] == "train"]
    assert train.loc[train["labelled_4"], "case"].tolist() == read_split("flare22", "train")[:4]
    case = read_case(out / "cases" / f"{read_split('flare22', 'test')[0]}.h5", n_classes=14)
    # 0.75 x 0.75 x 2 mm -> 1.5 x 1.5 x 2: 6 x 8 x 8, labels by nearest neighbour
    assert case.image.shape == (1, 6, 8, 8) and set(np.unique(case.label)) <= {0, 1, 9, 10}


def test_the_flare22_benchmark_builds_its_dag(release, tmp_path):
    import yaml

    from test_workflow import REPO, job_counts, smk

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    bench = {k: v for k, v in cfg["benchmarks"].items() if k in ("amos", "flare22")}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({
        "targets": ["flare22"], "benchmarks": bench, "sources": {"flare22": str(release[1])}}))
    out = smk(tmp_path, "-n", "-p", "results/flare22/summary.txt").stdout
    counts = job_counts(out)
    assert counts["train"] == 6 * 3 * 3 and counts["download"] == 1
    duo = next(line for line in out.splitlines() if "--out results/flare22/duomod/l7/seed1" in line)
    assert '"iterations":8500' in duo and "--protocol duomod" in out
