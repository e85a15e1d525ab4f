"""sslseg.metrics against medpy 0.5.2 (exact equality) and the empty-mask policies of case_metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from medpy.metric import binary as mp
from scipy import ndimage

from sslseg import metrics as M

# medpy's private helper (module-level double underscore: not name-mangled)
mp_surface = getattr(mp, "__surface_distances")


def blob(rng: np.random.Generator, shape, fill: float = 0.5, sigma: float = 1.5) -> np.ndarray:
    """A random smooth mask (a few connected blobs), never empty."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    mask = field > np.quantile(field, 1 - fill)
    assert mask.any()
    return mask


def noisy(rng: np.random.Generator, shape, p: float = 0.3) -> np.ndarray:
    mask = rng.random(shape) < p
    mask.flat[rng.integers(mask.size)] = True
    return mask


def pair(kind: str, shape, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "blob":
        return blob(rng, shape, 0.3), blob(rng, shape, 0.35)
    if kind == "overlap":  # prediction = reference with random boundary noise
        ref = blob(rng, shape, 0.25)
        pred = ref ^ (ndimage.binary_dilation(ref) & (rng.random(shape) < 0.3))
        pred.flat[np.flatnonzero(ref)[0]] = True
        return pred, ref
    if kind == "noise":
        return noisy(rng, shape, 0.2), noisy(rng, shape, 0.4)
    if kind == "edge":  # both masks touch the array edge on several faces
        ref = np.zeros(shape, bool)
        ref[(slice(0, max(2, shape[0] // 2)),) + tuple(slice(None) for _ in shape[1:])] = True
        pred = blob(rng, shape, 0.4)
        pred[(-1,) * len(shape)] = True  # the far corner
        return pred, ref
    if kind == "small":  # a small mask far away from a big one, inside a large empty margin
        ref = np.zeros(shape, bool)
        pred = np.zeros(shape, bool)
        ref[tuple(slice(s // 4, s // 4 + 3) for s in shape)] = True
        pred[tuple(slice(s - 3, s - 1) for s in shape)] = True
        return pred, ref
    raise AssertionError(kind)


SHAPES_2D = [(7, 13), (31, 17), (1, 9)]
SHAPES_3D = [(5, 11, 9), (9, 17, 13)]
SPACINGS = {2: [None, (1.5, 0.7), (2.0, 2.0)], 3: [None, (5.0, 1.5, 0.7), (1.0, 1.0, 1.0), (0.3, 2.5, 1.1)]}
KINDS = ["blob", "overlap", "noise", "edge", "small"]

CASES = [
    pytest.param(kind, shape, spacing, seed, id=f"{kind}-{'x'.join(map(str, shape))}-{spacing}-s{seed}")
    for shape in SHAPES_2D + SHAPES_3D
    for kind in KINDS
    for spacing in SPACINGS[len(shape)]
    for seed in (0, 1)
    if not (kind == "small" and min(shape) < 4)
]


PATHS = {"shells": {}, "pairs": {"SHELL_RADIUS": 0.0, "BRUTE_FORCE_PAIRS": 10**9},
         "kdtree": {"SHELL_RADIUS": 0.0, "BRUTE_FORCE_PAIRS": 0}}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind,shape,spacing,seed", CASES)
def test_identical_to_medpy(kind, shape, spacing, seed, path, monkeypatch):
    """Each way to the nearest surface voxel (offset shells, every pair, a k-d tree) gives medpy's values."""
    for name, value in PATHS[path].items():
        monkeypatch.setattr(M, name, value)
    M._LAST.clear()
    pred, ref = pair(kind, shape, seed)
    assert pred.any() and ref.any()
    assert M.dc(pred, ref) == mp.dc(pred, ref)
    assert M.jc(pred, ref) == mp.jc(pred, ref)
    assert M.hd95(pred, ref, spacing) == mp.hd95(pred, ref, voxelspacing=spacing)
    assert M.asd(pred, ref, spacing) == mp.asd(pred, ref, voxelspacing=spacing)
    # asd is directed: swapping the arguments is medpy's asd the other way round
    assert M.asd(ref, pred, spacing) == mp.asd(ref, pred, voxelspacing=spacing)
    a, b = M.surface_distances(pred, ref, spacing)
    np.testing.assert_array_equal(a, mp_surface(pred, ref, spacing))
    np.testing.assert_array_equal(b, mp_surface(ref, pred, spacing))


def test_hd95_and_asd_share_distances_by_content_not_identity():
    """asd after hd95 of the same pair reuses its distances; a pair changed in place is measured anew."""
    pred, ref = pair("overlap", (9, 17, 13), 0)
    spacing = (5.0, 1.5, 0.7)
    assert M.hd95(pred, ref, spacing) == mp.hd95(pred, ref, voxelspacing=spacing)
    assert M.asd(pred, ref, spacing) == mp.asd(pred, ref, voxelspacing=spacing)
    pred[4:, :, :] = False  # the same array object, other content
    assert M.asd(pred, ref, spacing) == mp.asd(pred, ref, voxelspacing=spacing)
    assert M.asd(pred, ref, (1.0, 1.0, 1.0)) == mp.asd(pred, ref, voxelspacing=(1.0, 1.0, 1.0))


def test_the_nearest_surface_voxel_by_length_not_by_steps():
    """Distances at surface voxels: 0 where the surfaces meet, otherwise the physically nearest: one slice away
    (5 mm) loses to three in-plane steps (3 x 0.7 = 2.1 mm), one in-plane step is the finest spacing."""
    spacing = (5.0, 0.7, 0.7)
    a = np.zeros((3, 1, 9), bool)
    b = np.zeros((3, 1, 9), bool)
    a[1, 0, 0] = True  # single voxels: each is its own surface
    b[0, 0, 0] = True  # one slice away: 5.0
    b[1, 0, 3] = True  # three in-plane steps: 2.1
    d_ab, _ = M.surface_distances(a, b, spacing)
    assert d_ab.tolist() == [np.sqrt((3 * 0.7) ** 2)] == [mp_surface(a, b, spacing)[0]]
    b[1, 0, 1] = True  # one in-plane step: exactly the finest spacing
    assert M.surface_distances(a, b, spacing)[0].tolist() == [0.7]
    b[1, 0, 0] = True  # the same voxel: 0
    assert M.surface_distances(a, b, spacing)[0].tolist() == [0.0]


@pytest.mark.parametrize("spacing", [None, (5.0, 1.5, 0.7)])
@pytest.mark.parametrize("where", ["centre", "corner", "edge"])
def test_single_voxel_masks(spacing, where):
    shape = (6, 9, 7)
    pos = {"centre": (3, 4, 3), "corner": (0, 0, 0), "edge": (5, 8, 2)}[where]
    single = np.zeros(shape, bool)
    single[pos] = True
    big = blob(np.random.default_rng(3), shape, 0.3)
    for pred, ref in [(single, big), (big, single), (single, single)]:
        assert M.dc(pred, ref) == mp.dc(pred, ref)
        assert M.jc(pred, ref) == mp.jc(pred, ref)
        assert M.hd95(pred, ref, spacing) == mp.hd95(pred, ref, voxelspacing=spacing)
        assert M.asd(pred, ref, spacing) == mp.asd(pred, ref, voxelspacing=spacing)
    assert M.hd95(single, single, spacing) == 0.0
    # two single voxels: the distance is the Euclidean distance in mm
    other = np.zeros(shape, bool)
    other[(5, 0, 6)] = True
    sp = np.ones(3) if spacing is None else np.asarray(spacing)
    expected = float(np.sqrt(np.sum(((np.subtract((5, 0, 6), pos)) * sp) ** 2)))
    assert M.hd95(single, other, spacing) == pytest.approx(expected, rel=1e-12)
    assert M.asd(single, other, spacing) == pytest.approx(expected, rel=1e-12)


def test_full_mask_touching_every_edge():
    rng = np.random.default_rng(7)
    full = np.ones((5, 8, 6), bool)
    part = blob(rng, full.shape, 0.5)
    for spacing in (None, (5.0, 1.5, 0.7)):
        assert M.hd95(full, part, spacing) == mp.hd95(full, part, voxelspacing=spacing)
        assert M.asd(part, full, spacing) == mp.asd(part, full, voxelspacing=spacing)
        assert M.hd95(full, full, spacing) == 0.0


def test_spacing_changes_distances_in_the_expected_direction():
    pred = np.zeros((3, 10), bool)
    ref = np.zeros((3, 10), bool)
    pred[1, 1] = True
    ref[1, 7] = True
    assert M.hd95(pred, ref) == 6.0
    assert M.hd95(pred, ref, (1.0, 0.5)) == 3.0
    assert M.asd(pred, ref, (7.0, 2.0)) == 12.0


def test_spacing_of_wrong_length_raises():
    m = np.ones((3, 4), bool)
    with pytest.raises(ValueError, match="spacing"):
        M.hd95(m, m, (1.0, 1.0, 1.0))


@pytest.mark.parametrize("fn", [M.hd95, M.asd])
def test_empty_masks_raise(fn):
    m = np.zeros((4, 4), bool)
    full = np.ones((4, 4), bool)
    with pytest.raises(ValueError):
        fn(m, full)
    with pytest.raises(ValueError):
        fn(full, m)


def test_medpy_raises_for_empty_masks():
    """Why an empty-mask policy is needed at all: medpy cannot compute a distance to nothing."""
    empty = np.zeros((5, 5), bool)
    some = np.zeros((5, 5), bool)
    some[2, 2] = True
    with pytest.raises(RuntimeError):
        mp.hd95(empty, some)
    with pytest.raises(RuntimeError):
        mp.hd95(some, empty)
    with pytest.raises(RuntimeError):
        mp.asd(empty, some)


# ---------------------------------------------------------------- hand-computed dice / jaccard

@pytest.mark.parametrize("pred,ref,dice,jacc", [
    ([[1, 0], [0, 0]], [[1, 0], [0, 0]], 1.0, 1.0),
    ([[1, 1], [0, 0]], [[1, 0], [0, 0]], 2 / 3, 1 / 2),
    ([[1, 1], [0, 0]], [[1, 0], [1, 0]], 1 / 2, 1 / 3),
    ([[1, 0], [0, 0]], [[0, 0], [0, 1]], 0.0, 0.0),
    ([[1, 1], [1, 1]], [[1, 1], [1, 0]], 6 / 7, 3 / 4),
    ([[0, 0], [0, 0]], [[0, 0], [0, 0]], 1.0, 1.0),  # both empty: medpy's documented 1.0
])
def test_dice_jaccard_by_hand(pred, ref, dice, jacc):
    pred, ref = np.array(pred), np.array(ref)
    assert M.dc(pred, ref) == pytest.approx(dice, abs=1e-15)
    assert M.jc(pred, ref) == pytest.approx(jacc, abs=1e-15)
    if pred.any() or ref.any():
        assert M.dc(pred, ref) == mp.dc(pred, ref)
    assert M.jc(pred, ref) == mp.jc(pred, ref)


def test_dice_per_class():
    pred = np.array([[0, 1, 1], [2, 2, 0], [3, 0, 0]])
    ref = np.array([[0, 1, 0], [2, 2, 2], [0, 0, 0]])
    out = M.dice_per_class(pred, ref, [1, 2, 3, 4])
    assert out[0] == pytest.approx(2 * 1 / 3)
    assert out[1] == pytest.approx(2 * 2 / 5)
    assert out[2] == 0.0  # predicted, absent in the reference
    assert math.isnan(out[3])  # absent in both


# ---------------------------------------------------------------- case_metrics

def test_case_metrics_ok_rows_match_medpy():
    rng = np.random.default_rng(11)
    shape, spacing = (6, 15, 11), (5.0, 1.5, 0.7)
    ref = np.zeros(shape, np.int64)
    ref[blob(rng, shape, 0.4)] = 1
    ref[blob(rng, shape, 0.15)] = 2
    pred = ref.copy()
    pred[rng.random(shape) < 0.1] = 2
    pred[rng.random(shape) < 0.05] = 0
    rows = M.case_metrics(pred, ref, [1, 2], spacing)
    assert [r["cls"] for r in rows] == [1, 2]
    for r in rows:
        p, g = pred == r["cls"], ref == r["cls"]
        assert r["status"] == "ok"
        assert r["dice"] == mp.dc(p, g)
        assert r["jaccard"] == mp.jc(p, g)
        assert r["hd95"] == mp.hd95(p, g, voxelspacing=spacing)
        assert r["asd"] == mp.asd(p, g, voxelspacing=spacing)
        assert r["tp"] == np.sum(p & g) and r["fp"] == np.sum(p & ~g) and r["fn"] == np.sum(~p & g)
        assert r["n_pred"] == p.sum() and r["n_ref"] == g.sum()


SHAPE = (4, 6, 5)
SPACING = (5.0, 1.5, 0.7)
DIAG_MM = math.sqrt((4 * 5.0) ** 2 + (6 * 1.5) ** 2 + (5 * 0.7) ** 2)
DIAG_VOX = math.sqrt(4 ** 2 + 6 ** 2 + 5 ** 2)


def _labels():
    """Class 1 in both (ok); class 2 only in the reference; class 3 only in the prediction; class 4 in neither."""
    pred = np.zeros(SHAPE, np.int64)
    ref = np.zeros(SHAPE, np.int64)
    pred[1:3, 1:4, 1:3] = 1
    ref[1:3, 2:5, 1:3] = 1
    ref[0, 0, 0:2] = 2
    pred[3, 5, 3:5] = 3
    return pred, ref


@pytest.mark.parametrize("policy,spacing,dist", [
    ("penalty", SPACING, DIAG_MM),
    ("penalty", None, DIAG_VOX),
    ("exclude", SPACING, math.nan),
    ("zero", SPACING, 0.0),
    ("zero", None, 0.0),
])
def test_case_metrics_empty_policies(policy, spacing, dist):
    pred, ref = _labels()
    rows = {r["cls"]: r for r in M.case_metrics(pred, ref, [1, 2, 3, 4], spacing, policy)}
    assert rows[1]["status"] == "ok"
    assert rows[1]["dice"] == mp.dc(pred == 1, ref == 1)

    both = rows[4]
    assert both["status"] == "both_empty"
    assert all(math.isnan(both[k]) for k in ("dice", "jaccard", "hd95", "asd"))
    assert (both["tp"], both["fp"], both["fn"], both["n_pred"], both["n_ref"]) == (0, 0, 0, 0, 0)

    pe = rows[2]
    assert pe["status"] == "pred_empty"
    assert (pe["tp"], pe["fp"], pe["fn"], pe["n_pred"], pe["n_ref"]) == (0, 0, 2, 0, 2)
    re_ = rows[3]
    assert re_["status"] == "ref_empty"
    assert (re_["tp"], re_["fp"], re_["fn"], re_["n_pred"], re_["n_ref"]) == (0, 2, 0, 2, 0)
    for r in (pe, re_):
        assert r["dice"] == 0.0 and r["jaccard"] == 0.0
        for k in ("hd95", "asd"):
            if math.isnan(dist):
                assert math.isnan(r[k])
            else:
                assert r[k] == pytest.approx(dist, rel=1e-12)


def test_case_metrics_rejects_bad_input():
    pred, ref = _labels()
    with pytest.raises(ValueError, match="shape"):
        M.case_metrics(pred[:-1], ref, [1], None)
    with pytest.raises(ValueError, match="policy"):
        M.case_metrics(pred, ref, [1], None, policy="ignore")
    assert set(M.EMPTY_POLICIES) == {"penalty", "exclude", "zero", "duomod", "decseg"}


def test_decseg_policy_scores_every_empty_mask_zero():
    """DEC-Seg's MyTest.py: Dice 0 unless both the prediction and the reference are non-empty -- a correct empty
    prediction on an empty reference included; no distance then."""
    pred, ref = _labels()
    rows = {r["cls"]: r for r in M.case_metrics(pred, ref, [1, 2, 3, 4], None, "decseg")}
    assert rows[1]["dice"] == mp.dc(pred == 1, ref == 1)
    for c, status in ((2, "pred_empty"), (3, "ref_empty"), (4, "both_empty")):
        r = rows[c]
        assert r["status"] == status and r["dice"] == 0.0 and r["jaccard"] == 0.0
        assert math.isnan(r["hd95"]) and math.isnan(r["asd"])


def test_saliency_metrics_of_binary_maps_by_hand():
    """The polyp toolbox's measures through pysodmetrics: MAE of binary maps is the share of wrong pixels; a
    perfect map has S-measure and weighted F 1."""
    ref = np.zeros((8, 8), bool)
    ref[2:6, 2:6] = True
    perfect = M.saliency_metrics(ref, ref)
    assert perfect["sm"] == pytest.approx(1.0) and perfect["wfm"] == pytest.approx(1.0) and perfect["mae"] == 0.0
    shifted = M.saliency_metrics(np.roll(ref, 1, axis=1), ref)  # 4 pixels lost on the left, 4 gained on the right
    assert shifted["mae"] == pytest.approx(8 / 64) and shifted["sm"] < 1 and shifted["wfm"] < 1
    assert M.saliency_metrics(np.zeros_like(ref), ref)["mae"] == pytest.approx(16 / 64)
