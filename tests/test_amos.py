"""AMOS22 in DHC's split: a miniature of ``amos22.zip`` in its layout (``amos22/{imagesTr,labelsTr,imagesVa,labelsVa}``,
``dataset.json``) through download (zip with its SHA-256, folder, file:// URL), preprocessing (1.5 x 1.5 x 2 mm,
linear / nearest, the CT window, the MRI ids, DHC's labelled lists), a DuoMod-Net run to metrics on the original
grids, and the `amos` benchmark's DAG."""

import json
import zipfile

import numpy as np
import pytest

from sslseg import SslsegError
from sslseg.cli import main
from sslseg.data import DATASETS, amos, load_prepared, read_split
from sslseg.data.download import sha256sum
from sslseg.io import Geometry, read_case, read_nifti, write_nifti

SPLITS = ("train", "val", "test")
SHAPE = (8, 24, 24)  # z, y, x at 0.75 x 0.75 x 4 mm: 16 x 12 x 12 at 1.5 x 1.5 x 2


def _volume(i):
    hu = np.full(SHAPE, -1000.0, np.float32)
    hu[:, 4:20, 4:20] = 40
    lab = np.zeros(SHAPE, np.uint8)
    lab[2:6, 6:14, 6:12] = 6  # liver
    lab[3:5, 15:19, 14:18] = 1 + i % 2  # spleen or right kidney
    lab[4, 10:12, 16:18] = 4  # a two-slice gallbladder
    hu[lab > 0] = 60 + 10 * lab[lab > 0]
    return hu, lab


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("amos")
    top = root / "amos22"
    test = set(read_split("amos", "test"))
    for i, cid in enumerate(c for s in SPLITS for c in read_split("amos", s)):
        part = "Va" if cid in test else "Tr"
        hu, lab = _volume(i)
        g = Geometry((0.75, 0.75, 4.0), (10.0, -5.0, 3.0))
        write_nifti(top / f"images{part}" / f"{cid}.nii.gz", hu, g)
        write_nifti(top / f"labels{part}" / f"{cid}.nii.gz", lab, g)
    (top / "dataset.json").write_text(json.dumps({"name": "AMOS", "labels": amos.CLASSES}))
    zpath = root / "amos22.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for p in sorted(top.rglob("*")):
            z.write(p, p.relative_to(root).as_posix())
    return zpath, top


def test_dhc_split_is_frozen():
    ids = {s: read_split("amos", s) for s in SPLITS}
    assert [len(ids[s]) for s in SPLITS] == [216, 24, 120]
    mri = {s: sum(amos.modality(c)["modality"] == "MRI" for c in ids[s]) for s in SPLITS}
    assert mri == {"train": 34, "val": 6, "test": 20}
    for n, n_mri in ((4, 0), (10, 3), (21, 5)):
        lab = read_split("amos", f"labelled_{n}")
        assert len(lab) == n and set(lab) <= set(ids["train"])
        assert sum(amos.modality(c)["modality"] == "MRI" for c in lab) == n_mri


def test_download_preprocess_and_a_duomod_run_to_metrics(release, tmp_path, capsys):
    zpath, top = release
    spec = DATASETS["amos"]
    with pytest.raises(SslsegError, match="sha256 mismatch .*not the official amos22.zip"):
        spec.download(str(zpath), tmp_path / "bad")
    facts = spec.download(str(zpath), tmp_path / "raw", sha256=sha256sum(zpath))
    assert facts["cases"] == 360 and facts["mri_cases"] == 60 and len(facts["sha256"]) == 64
    assert spec.download(str(top), tmp_path / "raw_dir")["sha256"] == "not verified (local folder)"
    linked = tmp_path / "raw_dir" / "cases" / "imagesTr" / "amos_0001_0000.nii.gz"
    assert linked.stat().st_ino == (top / "imagesTr" / "amos_0001.nii.gz").stat().st_ino  # a hard link, not a copy
    assert spec.download(top.as_uri(), tmp_path / "raw_url")["kind"] == "nifti"
    victim = read_split("amos", "test")[7]
    (top / "labelsVa" / f"{victim}.nii.gz").rename(tmp_path / "aside.nii.gz")
    try:
        with pytest.raises(SslsegError, match=f"no image and label for {victim} \\(1 of the 360"):
            spec.download(str(top), tmp_path / "raw_dir")
    finally:
        (tmp_path / "aside.nii.gz").rename(top / "labelsVa" / f"{victim}.nii.gz")
    assert len(list((tmp_path / "raw_dir" / "cases" / "labelsTr").iterdir())) == 360  # the earlier one stays

    out = tmp_path / "prepared"
    spec.preprocess(spec, tmp_path / "raw", out)
    info, cases = load_prepared(out)
    assert info.restore_order == 0 and info.tail == (4, 5, 11, 12, 13)
    assert cases.loc[cases["case"] == "amos_0507", "modality"].item() == "MRI"
    train = cases[cases["split"] == "train"]
    for n in (4, 10, 21):
        assert sorted(train.loc[train[f"labelled_{n}"], "case"]) == sorted(read_split("amos", f"labelled_{n}"))
    case = read_case(out / "cases" / "amos_0001.h5", n_classes=16)
    # 0.75 x 0.75 x 4 mm -> 1.5 x 1.5 x 2: half the rows and columns, twice the slices; labels by nearest
    # neighbour (no new values), HU by the window: air -1000 -> 0, tissue 40 -> 165 / 400
    assert case.image.shape == (1, 16, 12, 12) and case.geom.spacing == (1.5, 1.5, 2.0)
    assert set(np.unique(case.label)) <= {0, 1, 2, 4, 6} and case.image.min() == 0.0
    assert np.isclose(case.image[0, 0, 6, 3], 165 / 400, atol=1e-6)

    bench = {"dataset": "amos", "methods": ["supervised", "duomod"], "labels": [4], "seeds": [0],
             "protocol": "duomod", "model": {"name": "unet", "channels": [4, 8], "dropout": [0.0, 0.0]},
             "schedule": {"iterations": 2, "batch_labelled": 1, "batch_unlabelled": 1, "patch": [8, 8, 8]},
             "validation": {"every": 2, "batch_size": 4}, "inference": {"batch_size": 4}}
    from conftest import fit

    model = fit(bench, "duomod", 4, 0, out, tmp_path / "run")
    assert main(["infer", "--model", str(model), "--prepared", str(out), "--out", str(tmp_path / "pred"),
                 "--protocol", "duomod"]) == 0, capsys.readouterr().err
    pred, g = read_nifti(tmp_path / "pred" / f"{read_split('amos', 'test')[0]}.nii.gz")
    assert pred.shape == SHAPE and g.spacing == (0.75, 0.75, 4.0)  # back on the original grid
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--prepared", str(out), "--out",
                 str(tmp_path / "m.csv"), "--protocol", "duomod"]) == 0, capsys.readouterr().err
    import pandas as pd

    m = pd.read_csv(tmp_path / "m.csv")
    assert len(m) == 120 * 15 and set(m["protocol"]) == {"duomod"} and set(m["unit"]) == {"mm"}
    # classes absent from both masks score Dice 1 and ASD 0 under DuoMod-Net's rule
    both = m[m["status"] == "both_empty"]
    assert len(both) and (both["dice"] == 1).all() and (both["asd"] == 0).all()


def test_the_amos_benchmark_builds_its_dag_from_a_local_release(release, tmp_path):
    import yaml

    from test_workflow import REPO, job_counts, smk

    zpath, top = release
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({
        "targets": ["amos"], "benchmarks": {"amos": cfg["benchmarks"]["amos"]}, "sources": {"amos": str(top)}}))
    out = smk(tmp_path, "-n", "-p", "results/amos/summary.txt", "--resources", "gpu=1").stdout
    counts = job_counts(out)
    assert counts["train"] == counts["infer"] == counts["evaluate"] == 6 * 3 * 3 and counts["download"] == 1
    duo = next(line for line in out.splitlines() if "--out results/amos/duomod/l21/seed2" in line)
    assert '"nesterov":true' in duo and '"precision":"fp16"' in duo and '"n_filters":32' in duo
    assert "--protocol duomod" in out
