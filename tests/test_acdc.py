"""ACDC: the SSL4MIS h5 release (real copy in ../shared/data/ACDC, skipped when absent) and a miniature raw NIfTI
zip in the official layout built here; the `paper` protocol recomputed independently with medpy."""

import hashlib
import shutil
import zipfile

import h5py
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch
from medpy.metric import binary as medpy
from scipy import ndimage

from conftest import REPO
from sslseg import SslsegError
from sslseg.data import DATASETS, load_prepared, read_split
from sslseg.evaluate import evaluate
from sslseg.infer import predict_volume
from sslseg.io import read_case, write_nifti
from sslseg.models import build_model

ACDC = REPO.parent / "shared" / "data" / "ACDC"
real = pytest.mark.skipif(not (ACDC / "data" / "slices").is_dir(), reason=f"real ACDC copy not found at {ACDC}")
SPEC = DATASETS["acdc"]


@pytest.fixture(scope="module")
def acdc_h5(tmp_path_factory):
    root = tmp_path_factory.mktemp("acdc")
    SPEC.download(str(ACDC), root / "raw")
    SPEC.preprocess(SPEC, root / "raw", root / "prepared")
    return root


@real
@pytest.mark.realdata
def test_h5_release_round_trip_and_splits(acdc_h5):
    cases = pd.read_csv(acdc_h5 / "prepared" / "cases.csv")
    assert cases["split"].value_counts().to_dict() == {"train": 1312, "val": 20, "test": 40}
    for n, count in {1: 32, 3: 68, 7: 136, 14: 256}.items():
        assert int(cases[f"labelled_{n}"].sum()) == count
        assert set(cases.loc[cases[f"labelled_{n}"], "case"]) == set(read_split("acdc", "train_slices")[:count])
    assert set(cases.loc[cases["split"] == "test", "patient"]) == {v.split("_")[0] for v in read_split("acdc", "test")}
    for cid, rel in (("patient099_frame01_slice_3", "data/slices/patient099_frame01_slice_3.h5"),
                     ("patient001_frame01", "data/patient001_frame01.h5")):
        prepared = read_case(acdc_h5 / "prepared" / "cases" / f"{cid}.h5", n_classes=4)
        with h5py.File(ACDC / rel) as f:
            assert np.array_equal(prepared.image[0], f["image"][()])
            assert np.array_equal(prepared.label, f["label"][()])
    info, _ = load_prepared(acdc_h5 / "prepared")
    assert info.spacing_known is False and info.classes == {1: "RV", 2: "Myo", 3: "LV"} and info.in_channels == 1


def _ssl4mis_test_single_volume(image, label, net, patch):
    """Independent re-statement of SSL4MIS test_2D_fully.test_single_volume + calculate_metric_percase."""
    pred = np.zeros_like(label)
    for ind in range(image.shape[0]):
        x, y = image[ind].shape
        s = ndimage.zoom(image[ind], (patch / x, patch / y), order=0)
        with torch.no_grad():
            out = torch.argmax(torch.softmax(net(torch.from_numpy(s)[None, None].float()), 1), 1)[0].numpy()
        pred[ind] = ndimage.zoom(out, (x / patch, y / patch), order=0)
    rows = []
    for c in (1, 2, 3):
        p, g = pred == c, label == c
        rows.append((medpy.dc(p, g), medpy.jc(p, g), medpy.hd95(p, g), medpy.asd(p, g)) if p.any() else None)
    return pred, rows


@real
@pytest.mark.realdata
def test_ssl4mis_protocol_equals_medpy_on_real_volumes(acdc_h5, tmp_path):
    torch.manual_seed(0)
    net = build_model({"name": "unet", "channels": [4, 8, 16], "dropout": [0, 0, 0]}, 2, 1, 4).eval()
    with torch.no_grad():  # bias the head towards the classes so a random net predicts all of them somewhere
        net.head.bias.copy_(torch.tensor([0.0, 0.1, 0.1, 0.1]))
    vols = read_split("acdc", "test")[:3]
    pred_dir = tmp_path / "pred"
    expected = {}
    for vol in vols:
        case = read_case(acdc_h5 / "prepared" / "cases" / f"{vol}.h5", n_classes=4)
        ours = predict_volume(net, case.image, 2, [64, 64], 4, protocol="ssl4mis-2d", batch_size=3)
        theirs, rows = _ssl4mis_test_single_volume(case.image[0], case.label, net, 64)
        assert np.array_equal(ours, theirs)
        # a prediction with every class present: ground truth eroded by one pixel plus the network's noise
        pred = np.where(ndimage.binary_erosion(case.label > 0, iterations=1), case.label, ours).astype(np.uint8)
        write_nifti(pred_dir / f"{vol}.nii.gz", pred, case.geom)
        expected[vol] = [(medpy.dc(pred == c, case.label == c), medpy.jc(pred == c, case.label == c),
                          medpy.hd95(pred == c, case.label == c), medpy.asd(pred == c, case.label == c))
                         for c in (1, 2, 3)]
    # evaluate every test case: give the rest a perfect prediction
    for vol in read_split("acdc", "test")[3:]:
        case = read_case(acdc_h5 / "prepared" / "cases" / f"{vol}.h5", n_classes=4)
        write_nifti(pred_dir / f"{vol}.nii.gz", case.label, case.geom)
    df = pd.DataFrame(evaluate(pred_dir, acdc_h5 / "prepared", tmp_path / "m.csv", "test", "ssl4mis-2d"))
    assert set(df["policy"]) == {"zero"}  # the protocol's default: BCP's test script
    assert set(df["unit"]) == {"voxel"}
    for vol, rows in expected.items():
        got = df[df["case"] == vol].sort_values("cls")[["dice", "jaccard", "hd95", "asd"]].to_numpy()
        assert np.array_equal(got, np.array(rows))


@real
@pytest.mark.realdata
def test_corrupt_h5_stops_download_and_keeps_earlier_output(tmp_path, acdc_h5):
    copy = tmp_path / "copy"
    shutil.copytree(ACDC / "data", copy / "data")
    victim = copy / "data" / "slices" / "patient099_frame01_slice_3.h5"
    victim.write_bytes(victim.read_bytes()[:1000])  # truncated
    raw = tmp_path / "raw"
    shutil.copytree(acdc_h5 / "raw" / "h5", raw / "h5")
    before = hashlib.sha256((raw / "h5" / "data" / "patient001_frame01.h5").read_bytes()).hexdigest()
    with pytest.raises(SslsegError, match="patient099_frame01_slice_3.h5"):
        SPEC.download(str(copy), raw)
    after = hashlib.sha256((raw / "h5" / "data" / "patient001_frame01.h5").read_bytes()).hexdigest()
    assert before == after


# --------------------------------------------------------------------------- miniature raw release (NIfTI zip)

def _slice_counts():
    counts = {}
    for s in read_split("acdc", "train_slices"):
        vol, k = s.rsplit("_slice_", 1)
        counts[vol] = max(counts.get(vol, 0), int(k))
    return counts


def _mini_zip(tmp_path, mutate=None):
    """ACDC.zip in the official layout (database/training/patientXXX/...), tiny 12x10 in-plane volumes."""
    rng = np.random.default_rng(0)
    counts = _slice_counts()
    zpath = tmp_path / "ACDC.zip"
    vols = read_split("acdc", "train") + read_split("acdc", "val") + read_split("acdc", "test")
    with zipfile.ZipFile(zpath, "w") as z:
        for vol in vols:
            nz = counts.get(vol, 6)
            img = (rng.random((nz, 12, 10)) * 500).astype(np.float32)
            lab = rng.integers(0, 4, (nz, 12, 10)).astype(np.uint8)
            if mutate:
                vol_files = mutate(vol, img, lab)
                if vol_files is None:
                    continue
                img, lab = vol_files
            for arr, suffix in ((img, ""), (lab, "_gt")):
                im = sitk.GetImageFromArray(arr)
                im.SetSpacing((1.5, 1.4, 10.0))
                im.SetOrigin((1.0, 2.0, 3.0))
                f = tmp_path / "tmp.nii.gz"
                sitk.WriteImage(im, str(f))
                z.write(f, f"ACDC/database/training/{vol.split('_')[0]}/{vol}{suffix}.nii.gz")
    return zpath, hashlib.sha256(zpath.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini")
    return (root, *_mini_zip(root))


def test_raw_zip_is_verified_and_prepared_with_spacing(mini, tmp_path):
    root, zpath, digest = mini
    with pytest.raises(SslsegError, match="sha256 mismatch"):
        SPEC.download(zpath.as_uri(), tmp_path / "bad")  # the pinned official checksum does not match
    facts = SPEC.download(zpath.as_uri(), tmp_path / "raw", sha256=digest)
    assert facts["kind"] == "nifti"
    SPEC.preprocess(SPEC, tmp_path / "raw", tmp_path / "prep")
    cases = pd.read_csv(tmp_path / "prep" / "cases.csv")
    assert cases["split"].value_counts().to_dict() == {"train": 1312, "val": 20, "test": 40}
    assert cases["case"].iloc[:1312].tolist() == read_split("acdc", "train_slices")
    assert int(cases["labelled_3"].sum()) == 68
    vol = read_case(tmp_path / "prep" / "cases" / "patient001_frame01.h5", n_classes=4)
    assert vol.geom.spacing_zyx == pytest.approx((10.0, 1.4, 1.5))
    assert vol.geom.origin == pytest.approx((1.0, 2.0, 3.0))
    assert vol.image.min() == 0.0 and vol.image.max() == 1.0  # per-volume min-max
    sl = read_case(tmp_path / "prep" / "cases" / "patient099_frame01_slice_1.h5", n_classes=4)
    assert sl.image.shape == (1, 12, 10) and sl.geom.spacing_zyx == pytest.approx((1.4, 1.5))


@pytest.mark.parametrize("problem, needle", [
    ("missing", "patient001_frame01"),
    ("labels", "outside 0..3"),
    ("shape", "shape"),
    ("geometry", "not on the grid of"),
])
def test_bad_raw_input_names_the_file_and_keeps_prepared(tmp_path, mini, problem, needle):
    root, zpath, digest = mini
    SPEC.download(zpath.as_uri(), tmp_path / "raw", sha256=digest)
    SPEC.preprocess(SPEC, tmp_path / "raw", tmp_path / "prep")
    before = (tmp_path / "prep" / "cases.csv").read_text()
    folder = tmp_path / "raw" / "nifti" / "database" / "training" / "patient001"
    gt = folder / "patient001_frame01_gt.nii.gz"
    if problem == "missing":
        (folder / "patient001_frame01.nii.gz").unlink()
    else:
        ref = sitk.ReadImage(str(gt))
        arr = sitk.GetArrayFromImage(ref)
        arr = arr + 5 if problem == "labels" else arr[:, :-1] if problem == "shape" else arr
        out = sitk.GetImageFromArray(arr.astype(np.uint8))
        out.SetSpacing((1.5, 1.4, 5.0) if problem == "geometry" else ref.GetSpacing())
        out.SetOrigin(ref.GetOrigin())
        sitk.WriteImage(out, str(gt))
    with pytest.raises(SslsegError, match=needle):
        SPEC.preprocess(SPEC, tmp_path / "raw", tmp_path / "prep")
    assert (tmp_path / "prep" / "cases.csv").read_text() == before
    assert (tmp_path / "prep" / "cases" / "patient001_frame01.h5").is_file()
