"""LA: a miniature of UA-MT's h5 release in its official layout (``data/2018LA_Seg_Training Set/<case>/mri_norm2.h5``,
(x, y, z) arrays) through download (zip, file:// URL, folder, and the default per-file URLs), checksum refusal,
preprocessing (array order, spacing, 72/8/20 split, first-n budgets) and a 3D training run to metrics."""

import hashlib
import shutil
import zipfile

import h5py
import numpy as np
import pandas as pd
import pytest

from conftest import fit
from sslseg import SslsegError
from sslseg.cli import main
from sslseg.config import validate
from sslseg.data import DATASETS, load_prepared, read_split
from sslseg.data import la
from sslseg.io import read_case

X, Y, Z = 20, 16, 12  # (x, y, z) as the release stores them


def _ids() -> list[str]:
    """Every case id, in the order the miniature numbers them."""
    return sorted(read_split("la", "train") + read_split("la", "val") + read_split("la", "test"))


def _volume(i: int):
    rng = np.random.default_rng(i)
    label = np.zeros((X, Y, Z), np.uint8)
    label[4 + i % 3:14, 3:12, 2:9] = 1
    image = (rng.normal(0, 1, (X, Y, Z)) + 2.0 * label).astype(np.float32)
    return image, label


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """(zip, folder holding the case folders, checksum list) of a miniature with every case id of the splits."""
    root = tmp_path_factory.mktemp("la")
    cases = root / "data" / "2018LA_Seg_Training Set"
    lines = ["# miniature"]
    for i, cid in enumerate(_ids()):
        image, label = _volume(i)
        (cases / cid).mkdir(parents=True)
        path = cases / cid / "mri_norm2.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("image", data=image, compression="gzip")
            f.create_dataset("label", data=label, compression="gzip")
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.stat().st_size}  {cid}/mri_norm2.h5")
    sums = root / "sums.sha256"
    sums.write_text("\n".join(lines) + "\n")
    zpath = root / "UA-MT-data.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for p in sorted(cases.rglob("*.h5")):
            z.write(p, p.relative_to(root).as_posix())
    return zpath, cases, sums


def test_shipped_checksums_cover_exactly_the_frozen_splits():
    files = la.release_files()
    ids = [name.split("/")[0] for name in files]
    train, val, test = (read_split("la", s) for s in ("train", "val", "test"))
    assert len(files) == 100 and all(name.endswith("/mri_norm2.h5") for name in files)
    assert (len(train), len(val), len(test)) == (72, 8, 20) and sorted(ids) == sorted(train + val + test)
    assert all(len(d) == 64 and int(d, 16) >= 0 for d in files.values())


def test_download_preprocess_and_train_to_metrics(release, tmp_path, monkeypatch, capsys):
    zpath, cases, sums = release
    spec = DATASETS["la"]
    # the shipped list is the real release's: the miniature's first file is refused by name
    with pytest.raises(SslsegError, match=r"06SR5RBREL16DQ6M8LWS/mri_norm2.h5: sha256 mismatch"):
        spec.download(str(zpath), tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    monkeypatch.setattr(la, "H5_SUMS", sums)
    assert spec.download(str(zpath), tmp_path / "raw")["kind"] == "h5"
    assert spec.download(zpath.as_uri(), tmp_path / "raw_url")["sha256"] == hashlib.sha256(
        zpath.read_bytes()).hexdigest()
    assert spec.download(str(cases.parent.parent), tmp_path / "raw_dir")["sha256"] == "per-file list sums.sha256"
    # the default source: one URL per file
    monkeypatch.setattr(la, "URL", cases.as_uri() + "/{case}/mri_norm2.h5")
    assert spec.download("", tmp_path / "raw_default")["kind"] == "h5"
    assert len(list((tmp_path / "raw_default" / "h5").rglob("mri_norm2.h5"))) == 100

    out = tmp_path / "prepared"
    spec.preprocess(spec, tmp_path / "raw", out)
    info, table = load_prepared(out)
    assert info.dims == 3 and info.n_classes == 2 and info.budgets == (4, 8, 16)
    assert [int((table["split"] == s).sum()) for s in ("train", "val", "test")] == [72, 8, 20]
    train = table[table["split"] == "train"]
    for n in (4, 8, 16):  # the first n of UA-MT's train.list
        assert train.loc[train[f"labelled_{n}"], "case"].tolist() == read_split("la", "train")[:n]
    cid = read_split("la", "test")[0]
    case = read_case(out / "cases" / f"{cid}.h5", n_classes=2)
    image, label = _volume(_ids().index(cid))
    assert case.image.shape == (1, Z, Y, X) and case.geom.spacing == la.SPACING
    np.testing.assert_array_equal(case.label, label.transpose(2, 1, 0))
    np.testing.assert_array_equal(case.image[0], image.transpose(2, 1, 0))

    bench = {"dataset": "la", "methods": ["supervised"], "labels": [4], "seeds": [0],
             "model": {"name": "unet", "channels": [2, 4], "dropout": [0.0, 0.0]},
             "schedule": {"iterations": 2, "batch_labelled": 2, "batch_unlabelled": 0, "patch": [8, 8, 8]},
             "validation": {"every": 2, "batch_size": 2}}
    validate({"benchmarks": {"l": bench}})
    model = fit(bench, "supervised", 4, 0, out, tmp_path / "run")
    assert main(["infer", "--model", str(model), "--prepared", str(out), "--out", str(tmp_path / "pred")]) == 0, \
        capsys.readouterr().err
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--prepared", str(out), "--out",
                 str(tmp_path / "metrics.csv")]) == 0, capsys.readouterr().err
    m = pd.read_csv(tmp_path / "metrics.csv")
    assert sorted(m["case"]) == sorted(read_split("la", "test")) and set(m["class_name"]) == {"LA"}
    assert set(m["unit"]) == {"mm"}
    # reference voxels of each test case: its box (10 - i % 3) x 9 x 7
    sizes = {c: (10 - _ids().index(c) % 3) * 9 * 7 for c in read_split("la", "test")}
    assert all(m["n_ref"] == m["case"].map(sizes))


def test_a_missing_or_damaged_file_keeps_the_earlier_download(release, tmp_path, monkeypatch):
    _, cases, sums = release
    monkeypatch.setattr(la, "H5_SUMS", sums)
    spec = DATASETS["la"]
    spec.download(str(cases), tmp_path / "raw")
    before = sorted(p.name for p in (tmp_path / "raw" / "h5").iterdir())
    broken = tmp_path / "broken"
    shutil.copytree(cases, broken)
    victim = read_split("la", "val")[3]
    (broken / victim / "mri_norm2.h5").write_bytes(b"not h5")
    with pytest.raises(SslsegError, match=f"{victim}/mri_norm2.h5: sha256 mismatch"):
        spec.download(str(broken), tmp_path / "raw")
    (broken / victim / "mri_norm2.h5").unlink()
    with pytest.raises(SslsegError, match=f"{victim}/mri_norm2.h5: missing from the LA h5 release"):
        spec.download(str(broken), tmp_path / "raw")
    assert sorted(p.name for p in (tmp_path / "raw" / "h5").iterdir()) == before


def _uamt_test_single_case(net, image, patch, stride_xy, stride_z, n_classes):
    """UA-MT's ``test_single_case`` written out on our (z, y, x) arrays: pad to the patch, windows at
    min(k * stride, size - patch), softmax summed and divided by the count, argmax, padding cropped."""
    import math

    import torch

    d, h, w = image.shape
    pads = [max(p - s, 0) for s, p in zip((d, h, w), patch)]
    img = np.pad(image, [(p // 2, p - p // 2) for p in pads])
    dd, hh, ww = img.shape
    score = np.zeros((n_classes, dd, hh, ww), np.float32)
    cnt = np.zeros((dd, hh, ww), np.float32)
    strides = (stride_z, stride_xy, stride_xy)
    steps = [math.ceil((s - p) / st) + 1 for s, p, st in zip((dd, hh, ww), patch, strides)]
    for a in range(steps[0]):
        zs = min(strides[0] * a, dd - patch[0])
        for b in range(steps[1]):
            ys = min(strides[1] * b, hh - patch[1])
            for c in range(steps[2]):
                xs = min(strides[2] * c, ww - patch[2])
                x = torch.from_numpy(img[zs:zs + patch[0], ys:ys + patch[1], xs:xs + patch[2]][None, None].copy())
                with torch.no_grad():
                    y = torch.softmax(net(x.float()), 1)[0].numpy()
                score[:, zs:zs + patch[0], ys:ys + patch[1], xs:xs + patch[2]] += y
                cnt[zs:zs + patch[0], ys:ys + patch[1], xs:xs + patch[2]] += 1
    label = np.argmax(score / cnt[None], axis=0)
    return label[pads[0] // 2:pads[0] // 2 + d, pads[1] // 2:pads[1] // 2 + h, pads[2] // 2:pads[2] // 2 + w]


def test_uamt_protocol_equals_the_reference_loop_and_medpy(release, tmp_path, monkeypatch):
    """The `uamt-la` protocol against UA-MT's test loop and medpy (no spacing) written out independently, on five
    miniature test volumes: the same label maps, the same Dice, Jaccard, 95HD and ASD."""
    import torch
    from medpy.metric import binary as medpy
    from scipy import ndimage

    from sslseg.evaluate import evaluate
    from sslseg.infer import predict_volume
    from sslseg.io import write_nifti
    from sslseg.models import build_model

    _, cases, sums = release
    monkeypatch.setattr(la, "H5_SUMS", sums)
    spec = DATASETS["la"]
    spec.download(str(cases), tmp_path / "raw")
    spec.preprocess(spec, tmp_path / "raw", tmp_path / "prepared")
    torch.manual_seed(0)
    net = build_model({"name": "unet", "channels": [2, 4], "dropout": [0.0, 0.0]}, 3, 1, 2).eval()
    # on the 12 x 16 x 20 volumes: z windows at 0 and 2 (4 would overrun), y padded to one window, x windows at 0
    # and 2 (18 clamped)
    patch, expected = (10, 18, 18), {}
    test = read_split("la", "test")
    for cid in test:
        case = read_case(tmp_path / "prepared" / "cases" / f"{cid}.h5", n_classes=2)
        ours = predict_volume(net, case.image, 3, patch, 2, protocol="uamt-la", mode="constant", batch_size=3)
        if cid in test[:5]:
            theirs = _uamt_test_single_case(net, case.image[0], patch, 18, 4, 2)
            assert np.array_equal(ours, theirs)
            # scored: the reference eroded by one voxel, plus the network's noise elsewhere
            pred = np.where(ndimage.binary_erosion(case.label > 0), case.label, ours).astype(np.uint8)
            expected[cid] = (medpy.dc(pred, case.label), medpy.jc(pred, case.label), medpy.hd95(pred, case.label),
                             medpy.asd(pred, case.label))
        else:
            pred = case.label
        write_nifti(tmp_path / "pred" / f"{cid}.nii.gz", pred, case.geom)
    rows = evaluate(tmp_path / "pred", tmp_path / "prepared", tmp_path / "m.csv", "test", "uamt-la")
    got = {r["case"]: (r["dice"], r["jaccard"], r["hd95"], r["asd"]) for r in rows if r["case"] in expected}
    assert got == expected and {r["unit"] for r in rows} == {"voxel"} and {r["policy"] for r in rows} == {"zero"}


def test_uamt_window_starts_by_hand():
    from sslseg.infer import _starts

    # LA's 190-voxel x axis, 112-voxel windows every 18: ceil(78 / 18) + 1 = 6 windows, the last moved back to 78
    assert _starts(190, 112, 0.5, 18) == [0, 18, 36, 54, 72, 78]
    assert _starts(88, 80, 0.5, 4) == [0, 4, 8]  # its 88 slices, 80-slice windows every 4
    assert _starts(80, 80, 0.5, 4) == [0] and _starts(60, 80, 0.5, 4) == [0]  # one window (padded)


@pytest.fixture(scope="module")
def challenge(tmp_path_factory):
    """A miniature ``2018_UTAH_MICCAI.zip``: ``Training Set/<case>/lgemri.nrrd`` + ``laendo.nrrd`` (255 = atrium),
    (x, y, z) = 180 x 40 x 6 at 0.625 mm, origin (1, 2, 3); the atrium at x 80-99, y 10-29, z 1-4."""
    import SimpleITK as sitk

    root = tmp_path_factory.mktemp("la_raw")
    for i, cid in enumerate(_ids()):
        folder = root / "Training Set" / cid
        folder.mkdir(parents=True)
        rng = np.random.default_rng(i)
        label = np.zeros((6, 40, 180), np.uint8)  # (z, y, x)
        label[1:5, 10:30, 80:100] = 255
        image = (rng.integers(0, 60, label.shape) + (label > 0) * 100).astype(np.uint8)
        for arr, name in ((image, "lgemri.nrrd"), (label, "laendo.nrrd")):
            im = sitk.GetImageFromArray(arr)
            im.SetSpacing((0.625,) * 3)
            im.SetOrigin((1.0, 2.0, 3.0))
            sitk.WriteImage(im, str(folder / name), useCompression=True)
    zpath = root / "2018_UTAH_MICCAI.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for p in sorted((root / "Training Set").rglob("*.nrrd")):
            z.write(p, p.relative_to(root).as_posix())
    return zpath, root / "Training Set"


def test_challenge_archive_is_cropped_as_uamt_with_a_fixed_margin(challenge, release, tmp_path, monkeypatch):
    import SimpleITK as sitk

    zpath, folder = challenge
    spec = DATASETS["la"]
    with pytest.raises(SslsegError, match="sha256 mismatch"):  # the pinned digest is the real archive's
        spec.download(str(zpath), tmp_path / "raw")
    monkeypatch.setattr(la, "H5_SUMS", release[2])
    spec.download(str(release[1]), tmp_path / "raw")  # an h5 download first: the archive replaces it
    digest = hashlib.sha256(zpath.read_bytes()).hexdigest()
    assert spec.download(str(zpath), tmp_path / "raw", digest) == {"kind": "nrrd", "sha256": digest}
    assert not (tmp_path / "raw" / "h5").exists()
    assert spec.download(str(folder), tmp_path / "raw_dir")["sha256"] == "not verified (local folder)"
    # x: the box 80..99 (extent 19) widened by (112 - 19) // 2 = 46 and the margin 15: 19..160; y: clipped to 0..40
    assert la.crop_box(np.pad(np.ones((20, 20, 4)), ((80, 80), (10, 10), (1, 1)))) == (slice(19, 160), slice(0, 40))
    spec.preprocess(spec, tmp_path / "raw", tmp_path / "prepared")
    cid = read_split("la", "val")[0]
    case = read_case(tmp_path / "prepared" / "cases" / f"{cid}.h5", n_classes=2)
    raw = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / cid / "lgemri.nrrd"))).astype(np.float64)
    expected = ((raw - raw.mean()) / raw.std()).astype(np.float32)[:, :, 19:160]
    assert case.image.shape == (1, 6, 40, 141) and np.array_equal(case.image[0], expected)
    assert int(case.label.sum()) == 4 * 20 * 20 and case.label[1, 10, 80 - 19] == 1
    np.testing.assert_allclose(case.geom.origin, (1.0 + 19 * 0.625, 2.0, 3.0))
    assert case.geom.spacing == (0.625, 0.625, 0.625)
    info, table = load_prepared(tmp_path / "prepared")
    assert info.budgets == (4, 8, 16) and len(table) == 100


def test_challenge_folder_with_a_missing_label_names_it(challenge, tmp_path):
    _, folder = challenge
    partial = tmp_path / "partial"
    shutil.copytree(folder, partial)
    victim = read_split("la", "test")[5]
    (partial / victim / "laendo.nrrd").unlink()
    with pytest.raises(SslsegError, match=f"{victim}/laendo.nrrd: missing from the LA archive"):
        DATASETS["la"].download(str(partial), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_largest_components_by_hand():
    from sslseg.infer import largest_components

    pred = np.zeros((3, 5, 6), np.uint8)
    pred[0, 0, 0:3] = 1          # class 1: 3 voxels
    pred[2, 4, 3:5] = 1          # class 1: 2 voxels
    pred[1, 2, 2] = 1
    pred[2, 3, 3] = 1            # touches (2, 4, 3)... and (1, 2, 2) only by a corner: one 26-connected component
    pred[0, 4, 5] = 2            # class 2: two single voxels; the first in raster order stays
    pred[2, 0, 5] = 2
    out = largest_components(pred)
    assert np.count_nonzero(out == 1) == 4 and out[0, 0, 0] == 0 and out[1, 2, 2] == 1
    assert out[0, 4, 5] == 2 and out[2, 0, 5] == 0


def test_bcp_protocol_equals_its_test_loop(release, tmp_path, monkeypatch):
    """`bcp-la`: BCP's test_3d_patch with --nms 1 written out (foreground softmax averaged over UA-MT's windows,
    > 0.5, the largest 26-connected component by bincount) on five miniature volumes."""
    import torch
    from scipy import ndimage

    from sslseg.infer import predict_volume

    _, cases, sums = release
    monkeypatch.setattr(la, "H5_SUMS", sums)
    spec = DATASETS["la"]
    spec.download(str(cases), tmp_path / "raw")
    spec.preprocess(spec, tmp_path / "raw", tmp_path / "prepared")

    class Threshold(torch.nn.Module):
        """Foreground probability sigmoid(2 (x - 1.5)): the atrium (mean 2) and 7 % of the background noise
        (N(0, 1) > 1.5), scattered in small blobs."""

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, x):
            return torch.cat([1.5 - x, x - 1.5], 1) * self.w

    net = Threshold().eval()
    patch, changed = (10, 18, 18), 0
    for cid in read_split("la", "test")[:5]:
        case = read_case(tmp_path / "prepared" / "cases" / f"{cid}.h5", n_classes=2)
        argmax = _uamt_test_single_case(net, case.image[0], patch, 18, 4, 2)  # = foreground > 0.5 (two classes)
        labels, _ = ndimage.label(argmax, structure=np.ones((3, 3, 3)))  # skimage.measure.label's default in 3D
        theirs = (labels == np.argmax(np.bincount(labels.flat)[1:]) + 1) if labels.max() else argmax
        ours = predict_volume(net, case.image, 3, patch, 2, protocol="bcp-la", mode="constant")
        assert np.array_equal(ours, theirs.astype(np.uint8))
        changed += int(np.count_nonzero(ours != argmax))
    assert changed  # the component filter removed something on these volumes


def test_the_la_benchmark_builds_its_dag_from_a_local_release(release, tmp_path):
    """The repository's `la` benchmark, its source a local copy of the release: the whole DAG, and the training
    command carries BCP's schedule (step decay, its pre-training share)."""
    import yaml

    from test_workflow import REPO, job_counts, smk

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({
        "targets": ["la"], "benchmarks": {"la": cfg["benchmarks"]["la"]}, "sources": {"la": str(release[1])}}))
    out = smk(tmp_path, "-n", "-p", "results/la/summary.txt").stdout
    counts = job_counts(out)
    assert counts["train"] == counts["infer"] == counts["evaluate"] == 6 * 2 * 3 and counts["download"] == 1
    bcp = next(line for line in out.splitlines() if "--out results/la/bcp/l8/seed2" in line)
    assert '"lr_steps":{"every":2500,"gamma":0.1}' in bcp and '"pretrain":0.11764705882352941' in bcp
    # Hsu & Hua: their network, decay every 5000 and pre-training weight decay 1e-3 (the others keep BCP's)
    egm = next(line for line in out.splitlines() if "--out results/la/egm_dt/l4/seed0" in line)
    assert '"lr_steps":{"every":5000,"gamma":0.1}' in egm and '"pretrain_weight_decay":0.001' in egm
    assert '"name":"egm_vnet"' in egm and "pretrain_weight_decay" not in bcp
    assert "--source" in out and str(release[1]) in out
