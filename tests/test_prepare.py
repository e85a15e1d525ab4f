"""Preprocessing building blocks (resampling, per-class label resizing, non-zero crop, writing back on the original
grid), the two multi-channel synthetic datasets, 2D image files, and lazy case reads."""

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from sslseg import SslsegError
from sslseg.data import DATASETS, load_prepared
from sslseg.data.loader import CaseStore, TwoStreamSampler, _crop_box, _read_patch
from sslseg.data.prepare import nonzero_box, prepare_case, resampled_shape, resize_labels, restore_grid
from sslseg.evaluate import evaluate
from sslseg.io import Geometry, read_case, read_image_2d, read_nifti, write_nifti


def test_resampled_shape_follows_the_spacing_ratio():
    # 20 slices of 2.5 mm -> 1.5 mm: 33.3 -> 33; 40 x 1.2 / 1.5 = 32; 48 x 1.2 / 1.5 = 38.4 -> 38
    assert resampled_shape((20, 40, 48), (2.5, 1.2, 1.2), (1.5, 1.5, 1.5)) == (33, 32, 38)


def test_per_class_linear_label_resizing_by_hand():
    """nnU-Net's resize_segmentation: each class's mask resampled linearly and thresholded at 0.5.
    A 1-D run of class 1 of length 2 in 4 voxels, doubled: linear interpolation (grid mode, edge values) of
    [0, 1, 1, 0] at 8 points gives [0, .25, .75, 1, 1, .75, .25, 0] -> class 1 where >= 0.5."""
    lab = np.array([[0, 1, 1, 0]], np.uint8)
    out = resize_labels(lab, (1, 8), order=1)
    assert out.tolist() == [[0, 0, 1, 1, 1, 1, 0, 0]]
    assert resize_labels(lab, (1, 8), order=0).tolist() == [[0, 0, 1, 1, 1, 1, 0, 0]]
    # two classes side by side keep their order and never mix
    lab = np.array([[1, 1, 2, 2]], np.uint8)
    assert resize_labels(lab, (1, 2), order=1).tolist() == [[1, 2]]


def test_nonzero_box_uses_every_channel():
    img = np.zeros((2, 6, 7), np.float32)
    img[0, 1, 2] = 1
    img[1, 4, 5] = -3
    assert nonzero_box(img) == (slice(1, 5), slice(2, 6))
    assert nonzero_box(np.zeros((1, 3, 3))) == (slice(0, 3), slice(0, 3))


def test_prepare_case_then_restore_grid_puts_labels_back_on_the_original_grid():
    spec = DATASETS["synthmm"]
    rng = np.random.default_rng(0)
    image = np.zeros((2, 12, 30, 28), np.float32)
    label = np.zeros((12, 30, 28), np.uint8)
    image[:, 2:10, 5:25, 4:22] = rng.random((2, 8, 20, 18)) + 1
    label[4:8, 10:20, 8:16] = 1
    label[5:7, 13:17, 10:14] = 2
    geom = Geometry((1.2, 1.2, 2.5), (3.0, -4.0, 5.0))
    case = prepare_case(spec, image, label, geom, keep_original_label=True)
    assert case.source.box == (slice(2, 10), slice(5, 25), slice(4, 22)) and case.source.shape == (12, 30, 28)
    assert case.geom.spacing == (1.5, 1.5, 1.5) and case.geom.origin == geom.origin
    assert case.image.shape == (2,) + resampled_shape((8, 20, 18), (2.5, 1.2, 1.2), (1.5, 1.5, 1.5))
    assert np.array_equal(case.label_orig, label)
    back, bgeom = restore_grid(case.label, case)
    assert back.shape == label.shape and bgeom == geom
    assert (back[label == 0] == 0).mean() > 0.99 and (back == label).mean() > 0.98
    # unchanged grids pass through
    same = prepare_case(DATASETS["synth3d"], image[:1], label, geom, keep_original_label=True)
    assert same.source is None and same.label_orig is None and restore_grid(label, same)[0] is label


def test_two_channel_3d_dataset_is_cropped_resampled_and_scored_on_its_original_grid(prepared, tmp_path):
    info, cases = load_prepared(prepared["synthmm"])
    assert info.in_channels == 2 and info.groups == {1: ("whole", (1, 2)), 2: ("core", (2,))}
    assert set(cases["spacing"]) == {"1.5x1.5x1.5"}
    test_ids = cases.loc[cases["split"] == "test", "case"].tolist()
    for cid in test_ids:
        case = read_case(prepared["synthmm"] / "cases" / f"{cid}.h5", original=True, n_classes=3)
        raw, geom = read_nifti(prepared["synthmm"].parent.parent / "raw" / "synthmm" / "labelsTr" / f"{cid}.nii.gz")
        assert case.image.shape[0] == 2 and np.array_equal(case.label_orig, raw) and case.source.geom.close_to(geom)
        nz = case.image[case.image != 0]
        assert abs(float(nz.mean())) < 0.5  # z-scored inside the head
        write_nifti(tmp_path / f"{cid}.nii.gz", case.label_orig, case.source.geom)
    rows = evaluate(tmp_path, prepared["synthmm"], tmp_path / "m.csv")
    assert {r["class_name"] for r in rows} == {"whole", "core"}
    assert all(r["dice"] == 1 and r["unit"] == "mm" for r in rows)
    assert pd.read_csv(tmp_path / "m.csv").to_dict("records") == pd.DataFrame(rows).to_dict("records")


def test_rgb_image_files_are_read_and_masks_thresholded(prepared, tmp_path):
    info, cases = load_prepared(prepared["synthpolyp"])
    assert info.in_channels == 3 and info.spacing_known is False and info.channel_names == ("R", "G", "B")
    case = read_case(prepared["synthpolyp"] / "cases" / "synthpolyp_000.h5", n_classes=2)
    assert case.image.shape[0] == 3 and 0 <= case.image.min() and case.image.max() <= 1
    assert set(np.unique(case.label)) == {0, 1}
    # JPEG masks: values near 0 and 255 with compression noise; >= 128 is foreground
    mask = np.array([[0, 3, 127], [128, 250, 255]], np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(mask), str(tmp_path / "m.png"))
    assert read_image_2d(tmp_path / "m.png", 128).tolist() == [[0, 0, 0], [1, 1, 1]]
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = 200
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp_path / "i.png"))
    img = read_image_2d(tmp_path / "i.png")
    assert img.shape == (3, 2, 2) and img[0].min() == 200 and img[1].max() == 0


def test_image_file_with_the_wrong_channel_count_is_named(tmp_path):
    spec = DATASETS["synthpolyp"]
    spec.download("", tmp_path / "raw")
    grey = np.full((20, 20), 100, np.uint8)
    path = tmp_path / "raw" / "images" / "synthpolyp_003.jpg"
    sitk.WriteImage(sitk.GetImageFromArray(grey), str(path))
    with pytest.raises(SslsegError, match="synthpolyp_003.jpg: 1 channel"):
        spec.preprocess(spec, tmp_path / "raw", tmp_path / "prep")


# ---------------------------------------------------------------- lazy reads

def test_region_reads_equal_slices_of_the_whole_case(prepared):
    info, cases = load_prepared(prepared["synth3d"])
    rows = cases[cases["split"] == "train"]
    shapes = [tuple(int(v) for v in s.split("x")) for s in rows["shape"]]
    cached = CaseStore(prepared["synth3d"] / "cases", rows["case"].tolist(), shapes, info, True)
    lazy = CaseStore(prepared["synth3d"] / "cases", rows["case"].tolist(), shapes, info, True, budget=0)
    rng = np.random.default_rng(0)
    for i in range(len(shapes)):
        for patch in ((16, 24, 24), (48, 80, 80)):  # inside, and larger than the volume (zero padding)
            start = _crop_box(rng, shapes[i], patch, None)
            a, la = _read_patch(cached, i, start, patch)
            b, lb = _read_patch(lazy, i, start, patch)
            assert a.shape == (1,) + patch and np.array_equal(a, b) and np.array_equal(la, lb)
    assert len(cached._cache) == len(shapes) and not lazy._cache


def test_lazily_read_training_equals_cached_training(tiny, prepared, tmp_path, monkeypatch):
    import torch

    from conftest import fit

    b = tiny["synth3d"]
    fit(b, "mean_teacher", 2, 0, prepared["synth3d"], tmp_path / "cached")
    monkeypatch.setenv("SSLSEG_CACHE_MB", "0")
    fit(b, "mean_teacher", 2, 0, prepared["synth3d"], tmp_path / "lazy")
    wa = torch.load(tmp_path / "cached" / "model.pt", weights_only=True)["networks"]["student"]["state_dict"]
    wb = torch.load(tmp_path / "lazy" / "model.pt", weights_only=True)["networks"]["student"]["state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_2d_dataset_stored_as_volumes_samples_every_slice(prepared, tmp_path):
    """Training items are the slices of stored volumes; a budget of whole patients labels all their slices."""
    import shutil

    src = prepared["synth2d"]
    dst = tmp_path / "as_volumes"
    shutil.copytree(src, dst)
    cases = pd.read_csv(dst / "cases.csv")
    # replace the training slices by the test volumes relabelled as training patients
    test = cases[cases["split"] == "test"].copy()
    test["split"], test["labelled_1"] = "train", [True] + [False] * (len(test) - 1)
    test.to_csv(dst / "cases.csv", index=False)
    sampler = TwoStreamSampler(dst, 1, (32, 32), 2, 2, np.random.default_rng(0), frozenset({"x_l", "y_l", "x_u"}))
    depth = int(test["shape"].iloc[0].split("x")[0])
    assert sampler.items_l == [(0, z) for z in range(depth)]
    assert len(sampler.items_u) == sum(int(s.split("x")[0]) for s in test["shape"].iloc[1:])
    batch = sampler.next()
    assert batch["x_l"].shape == (2, 1, 32, 32) and batch["y_l"].shape == (2, 32, 32)
    assert batch["x_u"].shape == (2, 1, 32, 32)


def test_a_budget_without_unlabelled_cases_says_so(prepared, tmp_path):
    import shutil

    dst = tmp_path / "all_labelled"
    shutil.copytree(prepared["synth2d"], dst)
    cases = pd.read_csv(dst / "cases.csv")
    cases["labelled_1"] = cases["split"] == "train"
    cases.to_csv(dst / "cases.csv", index=False)
    with pytest.raises(SslsegError, match="labels all 154 training cases; no unlabelled case is left"):
        TwoStreamSampler(dst, 1, (32, 32), 2, 2, np.random.default_rng(0), frozenset({"x_l", "y_l", "x_u"}))
    TwoStreamSampler(dst, 1, (32, 32), 2, 2, np.random.default_rng(0), frozenset({"x_l", "y_l"}))  # supervised: fine


def test_la_like_phantom_is_one_small_structure_with_a_gappy_wall(tmp_path):
    """synthla: deterministic per case; one 26-connected atrium (cavity and vein stubs) of 1-5 % of the volume;
    its one-voxel rim partly bright (the enhanced wall) and partly not (the gaps); prepared z-scored."""
    from scipy import ndimage

    from sslseg.data.synthetic import atrium_phantom

    a, la, geom = atrium_phantom(np.random.default_rng([20245, 3]))
    b, lb, _ = atrium_phantom(np.random.default_rng([20245, 3]))
    assert np.array_equal(a, b) and np.array_equal(la, lb) and geom.spacing == (0.625,) * 3
    assert a.shape == (1, 40, 64, 64) and 0.01 < la.mean() < 0.05
    assert ndimage.label(la, structure=np.ones((3, 3, 3)))[1] == 1
    rim = ndimage.binary_dilation(la, iterations=1) & ~la.astype(bool)
    bright = a[0][rim] > np.median(a[0][la == 1])
    assert 0.3 < bright.mean() < 0.9  # an enhanced wall (brighter than the blood), with gaps (tissue, darker)
    spec = DATASETS["synthla"]
    spec.download("", tmp_path / "raw")
    spec.preprocess(spec, tmp_path / "raw", tmp_path / "prepared")
    info, cases = load_prepared(tmp_path / "prepared")
    assert info.budgets == (2, 4) and list(cases["split"].value_counts().sort_index()) == [20, 12, 2]
    case = read_case(tmp_path / "prepared" / "cases" / "synthla_014.h5", n_classes=2)
    assert abs(float(case.image.mean())) < 1e-4 and abs(float(case.image.std()) - 1) < 1e-3


def test_amos_like_phantom_has_fifteen_classes_and_tiny_tails(tmp_path):
    """synthabd: deterministic; AMOS's 15 classes all present; the five tail classes (esophagus, gallbladder,
    adrenals, duodenum) each under 300 voxels, the liver over 5,000; prepared with DuoMod-Net's CT window."""
    from sslseg.data.synthetic import AMOS_TAIL, abdomen15_phantom

    a, la, geom = abdomen15_phantom(np.random.default_rng([20246, 5]))
    b, lb, _ = abdomen15_phantom(np.random.default_rng([20246, 5]))
    assert np.array_equal(a, b) and np.array_equal(la, lb) and geom.spacing == (1.5, 1.5, 2.0)
    counts = np.bincount(la.ravel(), minlength=16)
    assert (counts[1:] > 0).all()
    assert all(counts[c] < 300 for c in AMOS_TAIL) and counts[6] > 5000
    spec = DATASETS["synthabd"]
    assert spec.info.tail == AMOS_TAIL and spec.info.n_classes == 16
    spec.download("", tmp_path / "raw")
    spec.preprocess(spec, tmp_path / "raw", tmp_path / "prepared")
    info, cases = load_prepared(tmp_path / "prepared")
    assert list(cases["split"].value_counts().sort_index()) == [10, 16, 2]
    case = read_case(tmp_path / "prepared" / "cases" / "synthabd_018.h5", n_classes=16)
    assert 0 <= case.image.min() and case.image.max() <= 1  # (HU + 125) / 400, clipped
