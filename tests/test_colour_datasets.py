"""DEC-Seg's datasets on miniatures of their official layouts: PraNet's TrainDataset / TestDataset zips with
Kvasir-SEG's zip beside them (polyp: five test sets scored separately and together), Kvasir-SEG alone (kvasir),
ISIC 2018's four S3 zips (isic2018: stored at 352 x 352, scored on the original grid), the Kaggle LGG tree
(brainmri: every file checked against the shipped list). The frozen splits are checked in full; the miniatures
hold a few cases of each split (the lists are narrowed for them), so the archives stay small."""

import json
import zipfile

import numpy as np
import pandas as pd
import pytest

import sslseg.data
import sslseg.data.prepare
from sslseg import SslsegError
from sslseg.cli import main
from sslseg.data import DATASETS, load_prepared, read_split
from sslseg.data import brainmri, isic2018, polyp
from sslseg.data.download import sha256sum
from sslseg.io import read_case, read_nifti

SPLITS = ("train", "val", "test")


def _write(path, array):
    import SimpleITK as sitk

    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=array.ndim == 3), str(path))


def _frame(i, shape=(40, 48)):
    """An RGB frame with a red disc (the lesion) and its 0 / 255 mask."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask = ((yy - shape[0] / 2 - i % 5) ** 2 + (xx - shape[1] / 2) ** 2 < (6 + i % 4) ** 2)
    img = np.full(shape + (3,), 120, np.uint8)
    img[mask] = (200, 60, 50)
    return img, (mask * 255).astype(np.uint8)


PACKAGE_SPLITS = sslseg.data.SPLIT_DIR


def _narrow(monkeypatch, tmp_path, name, counts, keep=None):
    """Use the first n ids of each frozen split list of ``name`` (polyp's test: the first n of every subset; with
    ``keep``, only ids in it)."""
    folder = tmp_path / "splits"
    (folder / name).mkdir(parents=True)
    for split, n in counts.items():
        ids = [c for c in (PACKAGE_SPLITS / name / f"{split}.list").read_text().split() if keep is None or c in keep]
        if split == "test" and name == "polyp":
            ids = [c for p in polyp.SUBSETS for c in [i for i in ids if i.startswith(p + "_")][:n]]
        else:
            ids = ids[:n]
        (folder / name / f"{split}.list").write_text("\n".join(ids) + "\n")
    monkeypatch.setattr(sslseg.data, "SPLIT_DIR", folder)
    monkeypatch.setattr(sslseg.data.prepare, "SPLIT_DIR", folder)


def _zip(path, root, members):
    with zipfile.ZipFile(path, "w") as z:
        for p in members:
            z.write(p, p.relative_to(root).as_posix())


def test_frozen_splits_are_the_papers():
    ids = {n: {s: read_split(n, s) for s in SPLITS} for n in ("polyp", "kvasir", "isic2018", "brainmri")}
    sizes = {n: [len(ids[n][s]) for s in SPLITS] for n in ids}
    assert sizes == {"polyp": [1400, 50, 798], "kvasir": [870, 30, 100], "isic2018": [2075, 100, 519],
                     "brainmri": [1025, 73, 275]}
    test = pd.Series([polyp.subset(c)["subset"] for c in ids["polyp"]["test"]]).value_counts().to_dict()
    assert test == {"CVC-ColonDB": 380, "ETIS-LaribPolypDB": 196, "Kvasir": 100, "CVC-ClinicDB": 62, "CVC-300": 60}
    train = [polyp.subset(c)["subset"] for c in ids["polyp"]["train"] + ids["polyp"]["val"]]
    assert (train.count("Kvasir"), train.count("CVC-ClinicDB")) == (900, 550)  # PraNet's 1,450
    assert set(ids["kvasir"]["test"]) == {c for c in ids["polyp"]["test"] if c.startswith("kvasir_")}
    patients = {s: {c.rsplit("_", 1)[0] for c in ids["brainmri"][s]} for s in SPLITS}
    assert not (patients["train"] & patients["test"]) and not (patients["val"] & patients["test"])
    assert sum(len(p) for p in patients.values()) == 110
    for name in ids:
        sslseg.data.check_splits(name)


@pytest.fixture
def pranet(tmp_path, monkeypatch):
    """A folder with PraNet's two zips and Kvasir-SEG's official zip."""
    _narrow(monkeypatch, tmp_path, "polyp", {"train": 10, "val": 2, "test": 2})
    src, build = tmp_path / "src", tmp_path / "build"
    src.mkdir()
    cases = [c for s in SPLITS for c in read_split("polyp", s)]
    train = set(read_split("polyp", "train") + read_split("polyp", "val"))
    kvasir = []
    for i, cid in enumerate(cases):
        prefix, stem = cid.split("_", 1)
        img, mask = _frame(i)
        folder = build / "TrainDataset" if cid in train else build / "TestDataset" / polyp.SUBSETS[prefix]
        _write(folder / "images" / f"{stem}.png", img)
        _write(folder / "masks" / f"{stem}.png", mask)
        if prefix == "kvasir":  # Kvasir-SEG's own frame: JPEG, a slightly larger lesion than PraNet's copy
            big = np.roll(mask, 1, axis=1) | mask
            _write(build / "Kvasir-SEG" / "images" / f"{stem}.jpg", img)
            _write(build / "Kvasir-SEG" / "masks" / f"{stem}.jpg", big)
            kvasir.append(stem)
    _zip(src / "TrainDataset.zip", build, sorted((build / "TrainDataset").rglob("*.png")))
    _zip(src / "TestDataset.zip", build, sorted((build / "TestDataset").rglob("*.png")))
    _zip(src / polyp.KVASIR_ZIP, build, sorted((build / "Kvasir-SEG").rglob("*.jpg")))
    monkeypatch.setattr(polyp, "KVASIR_SHA256", sha256sum(src / polyp.KVASIR_ZIP))
    return src, build, kvasir


def test_polyp_from_pranets_zips_and_kvasir_seg_to_tables_per_test_set(pranet, tmp_path, capsys):
    src, build, kvasir = pranet
    spec = DATASETS["polyp"]
    with pytest.raises(SslsegError, match="on Google Drive only"):
        spec.download("", tmp_path / "none")
    facts = spec.download(src.as_uri(), tmp_path / "raw")
    assert facts["kvasir_frames"].startswith("kvasir-seg.zip (sha256") and facts["sha256"].startswith("not verified")
    # Kvasir-SEG's frames replace PraNet's copies (JPEG: thresholded at 128 on the channel mean)
    kept = next((tmp_path / "raw" / "files" / "images").glob(f"kvasir_{kvasir[0]}.*"))
    assert kept.suffix == ".jpg"
    out = tmp_path / "prepared"
    spec.preprocess(spec, tmp_path / "raw", out)
    info, cases = load_prepared(out)
    assert info.in_channels == 3 and info.budgets == (145, 435) and not info.spacing_known
    test = cases[cases["split"] == "test"]
    assert sorted(test["subset"].unique()) == sorted(polyp.SUBSETS.values()) and len(test) == 10
    k = read_case(out / "cases" / f"kvasir_{kvasir[0]}.h5")
    assert k.image.shape == (3, 40, 48) and 0 <= k.image.min() and k.image.max() <= 1
    # a missing frame names itself and keeps the earlier download
    victim = next(iter((build / "TestDataset" / "ETIS-LaribPolypDB" / "masks").iterdir()))
    victim.unlink()
    (src / "TestDataset.zip").unlink()
    with pytest.raises(SslsegError, match=r"no image and mask for etis_\d+ \(1 of the 22 frames"):
        spec.download(str(build), tmp_path / "raw")
    assert len(list((tmp_path / "raw" / "files" / "images").iterdir())) == 22

    bench = {"dataset": "polyp", "methods": ["supervised"], "labels": [145], "seeds": [0], "protocol": "decseg",
             "model": {"name": "unet", "channels": [4, 8], "dropout": [0.0, 0.0]},
             "schedule": {"iterations": 2, "batch_labelled": 2, "batch_unlabelled": 2, "patch": [32, 32],
                          "augment": "none"}, "validation": {"every": 2}}
    from conftest import fit

    model = fit(bench, "supervised", 145, 0, out, tmp_path / "results" / "supervised" / "l145" / "seed0")
    run = model.parent
    assert main(["infer", "--model", str(model), "--prepared", str(out), "--out", str(run / "pred"),
                 "--protocol", "decseg"]) == 0, capsys.readouterr().err
    pred, _ = read_nifti(run / "pred" / f"{read_split('polyp', 'test')[0]}.nii.gz")
    assert pred.shape == (40, 48)  # back at the frame's own size
    assert main(["evaluate", "--pred", str(run / "pred"), "--prepared", str(out), "--out",
                 str(run / "metrics.csv"), "--protocol", "decseg"]) == 0, capsys.readouterr().err
    m = pd.read_csv(run / "metrics.csv")
    assert {"sm", "em", "wfm", "mae"} <= set(m.columns) and set(m["policy"]) == {"decseg"}
    from sslseg.config import report_spec, validate
    from sslseg.report import aggregate

    cfg = validate({"benchmarks": {"p": bench}})
    aggregate(report_spec(cfg, "p"), tmp_path / "results", out)
    sets = pd.read_csv(tmp_path / "results" / "paper" / "test_sets.csv")
    assert set(sets["subset"]) == set(polyp.SUBSETS.values()) | {"all"}
    assert set(sets["metric"]) == {"dice", "jaccard", "sm", "em", "wfm", "mae"}
    assert (sets.loc[sets["subset"] == "all", "n_images"] == 10).all()
    per_case = pd.read_csv(tmp_path / "results" / "per_case.csv")
    assert per_case.groupby("subset")["case"].nunique().to_dict() == {s: 2 for s in polyp.SUBSETS.values()}
    text = (tmp_path / "results" / "paper" / "supervised_l145_results.txt").read_text()
    assert "ETIS-LaribPolypDB" in text and "mDice" in text and "S_alpha" in text


def test_kvasir_from_the_official_zip(tmp_path, monkeypatch):
    _narrow(monkeypatch, tmp_path, "kvasir", {"train": 3, "val": 1, "test": 2})
    build = tmp_path / "build"
    for i, cid in enumerate(c for s in SPLITS for c in read_split("kvasir", s)):
        img, mask = _frame(i)
        _write(build / "Kvasir-SEG" / "images" / f"{cid[len('kvasir_'):]}.jpg", img)
        _write(build / "Kvasir-SEG" / "masks" / f"{cid[len('kvasir_'):]}.jpg", mask)
    zpath = tmp_path / polyp.KVASIR_ZIP
    _zip(zpath, build, sorted((build / "Kvasir-SEG").rglob("*.jpg")))
    spec = DATASETS["kvasir"]
    with pytest.raises(SslsegError, match="sha256 mismatch .*not the official kvasir-seg.zip"):
        spec.download(str(zpath), tmp_path / "bad")
    facts = spec.download(zpath.as_uri(), tmp_path / "raw", sha256=sha256sum(zpath))
    assert facts["sha256"] == sha256sum(zpath)
    assert spec.download(str(build), tmp_path / "raw_dir")["sha256"] == "not verified (local folder)"
    spec.preprocess(spec, tmp_path / "raw", tmp_path / "prepared")
    info, cases = load_prepared(tmp_path / "prepared")
    assert set(cases["subset"]) == {"Kvasir"} and info.budgets == (87, 261)
    # Kvasir-SEG's JPEG masks: compression noise around 0 and 255 thresholded at 128 on the channel mean
    case = read_case(tmp_path / "prepared" / "cases" / f"{read_split('kvasir', 'test')[0]}.h5")
    assert set(np.unique(case.label)) == {0, 1}


def test_isic2018_from_the_four_zips_stored_at_352_scored_on_the_original(tmp_path, monkeypatch, capsys):
    _narrow(monkeypatch, tmp_path, "isic2018", {"train": 3, "val": 1, "test": 1})
    src, build = tmp_path / "src", tmp_path / "build"
    src.mkdir()
    shapes = {}
    for i, cid in enumerate(c for s in SPLITS for c in read_split("isic2018", s)):
        part = "Validation" if cid in read_split("isic2018", "val") else "Training"
        shapes[cid] = (60 + 7 * i, 90 + 5 * i)
        img, mask = _frame(i, shapes[cid])
        _write(build / f"ISIC2018_Task1-2_{part}_Input" / f"{cid}.jpg", img)
        _write(build / f"ISIC2018_Task1_{part}_GroundTruth" / f"{cid}_segmentation.png", mask)
    digests = {}
    for name in isic2018.ZIPS:
        folder = build / name[:-4]
        _zip(src / name, build, sorted(folder.iterdir()))
        digests[name] = sha256sum(src / name)
    with pytest.raises(SslsegError, match="sha256 mismatch .*not the official ISIC2018_Task1-2_Training_Input.zip"):
        DATASETS["isic2018"].download(str(src), tmp_path / "bad")
    monkeypatch.setattr(isic2018, "ZIPS", digests)
    spec = DATASETS["isic2018"]
    facts = spec.download(src.as_uri(), tmp_path / "raw")
    assert facts["ISIC2018_Task1_Validation_GroundTruth.zip"] == digests["ISIC2018_Task1_Validation_GroundTruth.zip"]
    assert spec.download(str(build), tmp_path / "raw_dir")["images"] == 5  # the unpacked folders, not verifiable
    out = tmp_path / "prepared"
    spec.preprocess(spec, tmp_path / "raw", out)
    test_id = read_split("isic2018", "test")[0]
    case = read_case(out / "cases" / f"{test_id}.h5", original=True)
    assert case.image.shape == (3, 352, 352) and case.label_orig.shape == shapes[test_id]
    from scipy import ndimage

    _, mask = _frame(4, shapes[test_id])  # stored as DEC-Seg's loader zooms: scipy, order 0
    zoomed = ndimage.zoom((mask >= 128).astype(np.uint8), (352 / shapes[test_id][0], 352 / shapes[test_id][1]), order=0)
    assert np.array_equal(case.label, zoomed)
    bench = {"dataset": "isic2018", "methods": ["supervised"], "labels": [207], "seeds": [0], "protocol": "decseg",
             "model": {"name": "unet", "channels": [4, 8], "dropout": [0.0, 0.0]},
             "schedule": {"iterations": 1, "batch_labelled": 2, "batch_unlabelled": 2, "patch": [32, 32]},
             "validation": {"every": 1}}
    from conftest import fit

    model = fit(bench, "supervised", 207, 0, out, tmp_path / "run")
    assert main(["infer", "--model", str(model), "--prepared", str(out), "--out", str(tmp_path / "pred"),
                 "--protocol", "decseg"]) == 0, capsys.readouterr().err
    pred, _ = read_nifti(tmp_path / "pred" / f"{test_id}.nii.gz")
    assert pred.shape == shapes[test_id]  # the original size
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--prepared", str(out), "--out",
                 str(tmp_path / "m.csv"), "--protocol", "decseg"]) == 0, capsys.readouterr().err
    assert int(pd.read_csv(tmp_path / "m.csv")["n_ref"].iloc[0]) == int((_frame(4, shapes[test_id])[1] >= 128).sum())


def test_brainmri_checks_every_file_against_the_shipped_list(tmp_path, monkeypatch):
    _narrow(monkeypatch, tmp_path, "brainmri", {"train": 3, "val": 1, "test": 1})
    top = tmp_path / "archive" / "lgg-mri-segmentation" / "kaggle_3m"
    lines = []
    for i, cid in enumerate(c for s in SPLITS for c in read_split("brainmri", s)):
        patient = cid.rsplit("_", 1)[0]
        img, mask = _frame(i, (32, 32))
        for suffix, arr in (("", img), ("_mask", mask)):
            path = top / patient / f"{cid}{suffix}.tif"
            _write(path, arr)
            lines.append(f"{sha256sum(path)}  kaggle_3m/{patient}/{cid}{suffix}.tif")
    (tmp_path / "list.sha256").write_text("# test list\n" + "\n".join(lines) + "\n")
    monkeypatch.setattr(brainmri, "CHECKSUMS", tmp_path / "list.sha256")
    zpath = tmp_path / "lgg-mri-segmentation.zip"
    _zip(zpath, tmp_path / "archive", sorted(top.rglob("*.tif")))
    spec = DATASETS["brainmri"]
    with pytest.raises(SslsegError, match="on Kaggle"):
        spec.download("", tmp_path / "none")
    facts = spec.download(str(zpath), tmp_path / "raw")
    assert facts["slices"] == 5 and facts["files"].startswith("10 checked")
    # one changed file is refused by name
    victim = top / read_split("brainmri", "test")[0].rsplit("_", 1)[0] / f"{read_split('brainmri', 'test')[0]}.tif"
    _write(victim, _frame(9, (32, 32))[0])
    with pytest.raises(SslsegError, match=f"{victim.name}: sha256 mismatch"):
        spec.download(top.parent.as_uri(), tmp_path / "raw")
    spec.preprocess(spec, tmp_path / "raw", tmp_path / "prepared")
    info, cases = load_prepared(tmp_path / "prepared")
    assert info.in_channels == 3 and info.budget_unit == "labelled slices"
    case = read_case(tmp_path / "prepared" / "cases" / f"{read_split('brainmri', 'train')[0]}.h5")
    assert case.image.shape == (3, 32, 32) and set(np.unique(case.label)) == {0, 1}
    assert json.loads((tmp_path / "prepared" / "dataset.json").read_text())["channel_names"][1] == "FLAIR"


def test_the_polyp_benchmark_builds_its_dag_from_local_archives(pranet, tmp_path):
    import yaml

    from test_workflow import REPO, job_counts, smk

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    bench = {k: v for k, v in cfg["benchmarks"].items() if k in ("polyp", "isic2018", "brainmri")}
    work = tmp_path / "wf"
    work.mkdir()
    (work / "config.yaml").write_text(yaml.safe_dump({"targets": ["polyp"], "benchmarks": bench,
                                                      "sources": {"polyp": str(pranet[0])}}))
    out = smk(work, "-n", "-p", "results/polyp/summary.txt").stdout
    counts = job_counts(out)
    assert counts["train"] == counts["evaluate"] == 2 * 2 * 3 and counts["download"] == 1
    run = next(line for line in out.splitlines() if "--out results/polyp/decseg/l435/seed2" in line)
    assert '"iterations":10000' in run and '"augment":"none"' in run and "res2net50_v1b_26w_4s" in run
    assert "--protocol decseg" in out
