"""Pancreas-NIH in the MC-Net convention: a miniature of the h5 release in its committed layout
(``data/Pancreas/Pancreas_h5/image00XX_norm.h5``, (x, y, z) arrays) through download (zip, file:// URL, folder,
the default per-file URLs), git-blob checking, preprocessing (array order, 1 mm, 56/6/20 split, first-n budgets)
and evaluation under `mcnet-pancreas`."""

import subprocess
import zipfile

import h5py
import numpy as np
import pytest

from sslseg import SslsegError
from sslseg.cli import main
from sslseg.data import DATASETS, load_prepared, pancreas_mcnet, read_split
from sslseg.data.download import git_blob_sha1
from sslseg.io import read_case, write_nifti

SPLITS = ("train", "val", "test")


def _ids():
    return sorted(c for s in SPLITS for c in read_split("pancreas_mcnet", s))


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("pancreas")
    folder = root / "data" / "Pancreas" / "Pancreas_h5"
    folder.mkdir(parents=True)
    lines = ["# miniature"]
    for i, cid in enumerate(_ids()):
        rng = np.random.default_rng(i)
        label = np.zeros((14, 12, 10), np.uint8)  # (x, y, z)
        label[3:9 + i % 3, 4:8, 2:7] = 1
        image = np.clip(rng.normal(0.4, 0.1, label.shape) + 0.3 * label, 0, 1).astype(np.float32)
        with h5py.File(folder / f"{cid}_norm.h5", "w") as f:
            f.create_dataset("image", data=image)
            f.create_dataset("label", data=label)
        lines.append(f"{git_blob_sha1(folder / f'{cid}_norm.h5')}  {cid}_norm.h5")
    blobs = root / "blobs.gitsha1"
    blobs.write_text("\n".join(lines) + "\n")
    zpath = root / "Pancreas_h5.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for p in sorted(folder.iterdir()):
            z.write(p, p.relative_to(root).as_posix())
    return zpath, folder, blobs


def test_shipped_blob_ids_cover_exactly_the_frozen_splits():
    files = pancreas_mcnet.release_files()
    assert len(files) == 82 and sorted(n[:-len("_norm.h5")] for n in files) == _ids()
    assert [len(read_split("pancreas_mcnet", s)) for s in SPLITS] == [56, 6, 20]


def test_git_blob_id_is_git_hash_object(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"pancreas\n")
    assert git_blob_sha1(p) == "7443affc12c9d41a5271f0b1ea03724b1b6b6dcb"  # `git hash-object` of that file
    git = subprocess.run(["git", "hash-object", str(p)], capture_output=True, text=True)
    assert git.returncode != 0 or git.stdout.strip() == git_blob_sha1(p)


def test_download_preprocess_and_evaluate(release, tmp_path, monkeypatch, capsys):
    zpath, folder, blobs = release
    spec = DATASETS["pancreas_mcnet"]
    with pytest.raises(SslsegError, match=r"image0001_norm.h5: git_blob_sha1 mismatch"):
        spec.download(str(zpath), tmp_path / "bad")  # the shipped ids are the real release's
    monkeypatch.setattr(pancreas_mcnet, "BLOBS", blobs)
    assert spec.download(str(zpath), tmp_path / "raw")["kind"] == "h5"
    assert spec.download(zpath.as_uri(), tmp_path / "raw_url")["kind"] == "h5"
    assert spec.download(str(folder), tmp_path / "raw_dir")["sha256"] == "per-file git blob ids blobs.gitsha1"
    monkeypatch.setattr(pancreas_mcnet, "URL", folder.as_uri() + "/{name}")
    spec.download("", tmp_path / "raw_default")
    assert len(list((tmp_path / "raw_default" / "h5").iterdir())) == 82
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for p in folder.iterdir():
        (damaged / p.name).write_bytes(p.read_bytes())
    victim = read_split("pancreas_mcnet", "test")[4]
    (damaged / f"{victim}_norm.h5").write_bytes(b"x")
    with pytest.raises(SslsegError, match=f"{victim}_norm.h5: git_blob_sha1 mismatch"):
        spec.download(str(damaged), tmp_path / "raw")
    assert len(list((tmp_path / "raw" / "h5").iterdir())) == 82  # the earlier download is kept

    out = tmp_path / "prepared"
    spec.preprocess(spec, tmp_path / "raw", out)
    info, cases = load_prepared(out)
    assert info.budgets == (6, 12) and info.dims == 3
    train = cases[cases["split"] == "train"]
    for n in (6, 12):
        assert train.loc[train[f"labelled_{n}"], "case"].tolist() == read_split("pancreas_mcnet", "train")[:n]
    cid = read_split("pancreas_mcnet", "test")[0]
    case = read_case(out / "cases" / f"{cid}.h5", n_classes=2)
    with h5py.File(folder / f"{cid}_norm.h5") as f:
        np.testing.assert_array_equal(case.label, f["label"][()].transpose(2, 1, 0))
    assert case.image.shape == (1, 10, 12, 14) and case.geom.spacing == (1.0, 1.0, 1.0)
    for t in read_split("pancreas_mcnet", "test"):
        c = read_case(out / "cases" / f"{t}.h5", n_classes=2)
        write_nifti(tmp_path / "pred" / f"{t}.nii.gz", c.label, c.geom)
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--prepared", str(out), "--out",
                 str(tmp_path / "m.csv"), "--protocol", "mcnet-pancreas"]) == 0, capsys.readouterr().err
    import pandas as pd

    m = pd.read_csv(tmp_path / "m.csv")
    sizes = {t: (6 + _ids().index(t) % 3) * 4 * 5 for t in read_split("pancreas_mcnet", "test")}
    assert (m["dice"] == 1).all() and (m["n_ref"] == m["case"].map(sizes)).all() and set(m["unit"]) == {"voxel"}
