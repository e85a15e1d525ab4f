"""Strong augmentations, FixMatch, UniMatch and BCP: distinctive mechanisms on tiny tensors with expectations
computed by hand (see the comments)."""

import math

import pytest
import torch
import torch.nn as nn

import sslseg.augment as aug
from conftest import build_method, fit
from sslseg.methods import METHODS, method_params
from sslseg.methods.bcp import largest_cc, mix_loss
from sslseg.methods.unimatch import decode_with_fp


# ------------------------------------------------------------------------------------------------ augmentations

@pytest.mark.parametrize("bright_first, expected", [(True, [0.475, 0.825]), (False, [0.525, 0.975])])
def test_colour_jitter_order_and_clamp(monkeypatch, bright_first, expected):
    # x = [0.2, 0.8], brightness 1.5, contrast 0.5.
    # brightness first: [0.3, 1.2 -> 1.0], mean 0.65, 0.5 x + 0.325 = [0.475, 0.825]
    # contrast first: mean 0.5, 0.5 x + 0.25 = [0.35, 0.65], x 1.5 = [0.525, 0.975]
    draws = iter([torch.tensor([1.5]), torch.tensor([0.5])])
    monkeypatch.setattr(aug, "_u", lambda n, lo, hi: next(draws))
    real_rand = torch.rand
    rand_draws = iter([torch.tensor([0.0]), torch.tensor([0.0 if bright_first else 0.9])])  # apply, order
    monkeypatch.setattr(aug.torch, "rand", lambda *a, **k: next(rand_draws))
    x = torch.tensor([0.2, 0.8]).view(1, 1, 1, 2)
    out = aug.colour_jitter(x, 0.5, 0.8)
    monkeypatch.setattr(aug.torch, "rand", real_rand)
    assert out.flatten().tolist() == pytest.approx(expected)


def test_colour_jitter_probability_zero_is_identity():
    x = torch.rand(3, 1, 5, 5)
    assert torch.equal(aug.colour_jitter(x, 0.5, p=0.0), x)
    rgb = torch.rand(3, 3, 5, 5)
    assert torch.equal(aug.colour_jitter(rgb, 0.5, p=0.0), rgb)


GREY_A = 0.2989  # grey of pure red
GREY_B = 0.2989 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6  # grey of (0.2, 0.4, 0.6) = 0.36298


@pytest.mark.parametrize("order, expected", [
    # hue + 1/3 (a 120 degree turn): red (h 0) -> green; (0.2, 0.4, 0.6) has h = 210 deg, s = 2/3, v = 0.6 ->
    # h = 330 deg: sector 5, f = 0.5, p = 0.2, q = t = 0.4 -> (v, p, q) = (0.6, 0.2, 0.4)
    ([3], [[0.0, 0.6], [1.0, 0.2], [0.0, 0.4]]),
    # saturation 0: every channel becomes the grey value 0.2989 R + 0.587 G + 0.114 B
    ([2], [[GREY_A, GREY_B]] * 3),
    # contrast 0.5 around the mean grey of the image (0.33094), then brightness x2, clamped at 1
    ([1, 0], [[1.0, 2 * (0.1 + (GREY_A + GREY_B) / 4)], [2 * (GREY_A + GREY_B) / 4, 2 * (0.2 + (GREY_A + GREY_B) / 4)],
              [2 * (GREY_A + GREY_B) / 4, 2 * (0.3 + (GREY_A + GREY_B) / 4)]]),
])
def test_rgb_colour_jitter_as_torchvision_defines_it(monkeypatch, order, expected):
    # two pixels: pure red and (0.2, 0.4, 0.6); factors b = 2, c = 0.5, s = 0, h = 1/3, applied in ``order``;
    # expected values per channel (R, G, B), each [red pixel, other pixel]
    # (0 brightness, 1 contrast, 2 saturation, 3 hue; the others are skipped by making them identities)
    factors = {0: 2.0, 1: 0.5, 2: 0.0, 3: 1 / 3}
    identity = {0: 1.0, 1: 1.0, 2: 1.0, 3: 0.0}
    draws = iter([torch.tensor([factors[k] if k in order else identity[k]]) for k in range(4)])
    monkeypatch.setattr(aug, "_u", lambda n, lo, hi: next(draws))
    monkeypatch.setattr(aug.torch, "randperm", lambda n: torch.tensor(order + [k for k in range(4) if k not in order]))
    x = torch.tensor([[1.0, 0.2], [0.0, 0.4], [0.0, 0.6]]).view(1, 3, 1, 2)
    out = aug.colour_jitter(x, 0.5, p=1.0, hue=0.4)
    torch.testing.assert_close(out[0, :, 0], torch.tensor(expected), atol=1e-5, rtol=0)  # (channel, pixel)


def test_rgb_hue_round_trip_and_grey_pixels():
    x = torch.rand(3, 4, 5)
    assert torch.allclose(aug._hsv_to_rgb(aug._rgb_to_hsv(x)), x, atol=1e-6)
    grey = torch.full((3, 2, 2), 0.4)
    assert torch.equal(aug._rgb_to_hsv(grey)[0], torch.zeros(2, 2))  # hue of a grey pixel is 0, as torchvision
    with pytest.raises(ValueError, match="1 or 3 channels"):
        aug.colour_jitter(torch.rand(2, 2, 4, 4))


def test_blur_treats_every_channel_alike(monkeypatch):
    monkeypatch.setattr(aug, "_u", lambda n, lo, hi: torch.full((n,), 1.0))
    x = torch.zeros(2, 3, 9, 9)
    x[:, :, 4, 4] = 1
    out = aug.gaussian_blur(x, p=1.0)
    assert torch.allclose(out[0, 0], out[1, 2]) and out[0, 1].sum().item() == pytest.approx(1.0, abs=1e-6)


def test_gaussian_blur_of_a_delta_is_the_normalised_gaussian(monkeypatch):
    monkeypatch.setattr(aug, "_u", lambda n, lo, hi: torch.full((n,), 1.0))  # sigma 1 -> radius 3
    x = torch.zeros(1, 1, 15, 15)
    x[0, 0, 7, 7] = 1
    out = aug.gaussian_blur(x, p=1.0)
    g = torch.exp(-0.5 * torch.arange(-3, 4, dtype=torch.float32) ** 2)
    g = g / g.sum()
    assert out.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert out[0, 0, 4:11, 4:11] == pytest.approx(torch.outer(g, g), abs=1e-7)
    assert out[0, 0, 7, 7].item() == pytest.approx(float(g[3] ** 2))
    const = torch.full((2, 1, 9, 9), 0.3)
    assert aug.gaussian_blur(const, p=1.0) == pytest.approx(const, abs=1e-6)  # reflect padding keeps a flat image


def test_cutmix_boxes_are_single_rectangles_in_the_area_range():
    torch.manual_seed(0)
    boxes = aug.cutmix_boxes(200, (64, 48), p=0.5)
    areas = boxes.sum((1, 2))
    assert 60 < int((areas > 0).sum()) < 140  # about half the images get a box
    for b in boxes[areas > 0]:
        rows, cols = b.any(1).nonzero().flatten(), b.any(0).nonzero().flatten()
        h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert b.sum() == h * w  # one filled rectangle
        assert h * w <= 0.4 * 64 * 48 + 1 and h * w >= int(math.sqrt(0.02 * 64 * 48 * 0.3)) ** 2 * 0
        assert 0.3 * 0.5 <= h / w <= 2 / 0.3


@pytest.mark.parametrize("size, box", [((256, 256), (170, 170)), ((112, 112, 80), (74, 74, 53))])
def test_bcp_box_is_two_thirds_of_each_axis(size, box):
    m = aug.bcp_box_mask(size)
    zeros = (m == 0).nonzero()
    extent = tuple(int(zeros[:, i].max() - zeros[:, i].min() + 1) for i in range(len(size)))
    assert extent == box and int((m == 0).sum()) == math.prod(box)


# ------------------------------------------------------------------------------------------------------------- BCP

L = 100.0  # logit margin: CE of the favoured class ~ 0, of the other ~ L; squared probabilities of the
# disfavoured class (< e^-100) vanish against the Dice smoothing 1e-10


class Threshold(nn.Module):
    """Logits [0, L (2x - 1)]: class 1 where the intensity is above 0.5. Records its inputs."""

    spatial_dims = 2

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return torch.cat([torch.zeros_like(x), L * (2 * x - 1)], 1) + self.w


def test_bcp_mix_loss_weights_inside_and_outside():
    # every pixel predicts class 1 with margin L; outside labels 0 (wrong: CE L, Dice 1), inside 1 (right: 0, 0)
    logits = torch.cat([torch.zeros(1, 1, 3, 3), torch.full((1, 1, 3, 3), L)], 1)
    mask = torch.ones(3, 3)
    mask[:2, :2] = 0
    dice, ce = mix_loss(logits, torch.zeros(1, 3, 3), torch.ones(1, 3, 3), mask, w_out=0.5, w_in=1.0)
    assert ce.item() == pytest.approx(0.5 * L, rel=1e-6)
    assert dice.item() == pytest.approx(0.5, abs=1e-6)
    dice, ce = mix_loss(logits, torch.ones(1, 3, 3), torch.zeros(1, 3, 3), mask, w_out=0.5, w_in=1.0)
    assert (dice.item(), ce.item()) == pytest.approx((1.0, L), rel=1e-6)


def test_bcp_step_mixes_both_ways_with_the_paper_weights():
    m = build_method("bcp", Threshold, method_params("bcp", {"pretrain": 0.0}), 100, 2)
    a, b, ua, ub = (torch.full((1, 1, 3, 3), v) for v in (1.0, 0.0, 0.25, 0.75))
    batch = {"x_l": torch.cat([a, b]), "y_l": torch.zeros(2, 3, 3, dtype=torch.long), "x_u": torch.cat([ua, ub])}
    loss, logs = m.training_step(batch, 0)
    inside = torch.zeros(3, 3, dtype=torch.bool)
    inside[:2, :2] = True  # the 2x2 box of a 3x3 image always starts at (0, 0)
    x_u_mix, x_l_mix = m.student.seen
    assert torch.equal(x_u_mix[0, 0], torch.where(inside, 1.0, 0.25))  # ua outside, a inside
    assert torch.equal(x_l_mix[0, 0], torch.where(inside, 0.75, 0.0))  # b outside, ub inside
    # teacher pseudo-labels: ua (0.25) -> 0, ub (0.75) -> 1. X_u: outside ua predicted 0 = pseudo 0 (weight 0.5),
    # inside a predicted 1 vs label 0 -> CE L, Dice 1 (weight 1). X_l: b predicted 0 = label 0, ub predicted 1 =
    # pseudo 1 -> 0. Loss = (Dice 1 + CE L) / 2.
    assert loss.item() == pytest.approx((1 + L) / 2, rel=1e-4)
    assert m.stage == "self-train"


def test_bcp_pretraining_mixes_labelled_images_only():
    m = build_method("bcp", Threshold, method_params("bcp", {"pretrain": 0.5}), 10, 2)
    a, b = torch.full((1, 1, 3, 3), 1.0), torch.full((1, 1, 3, 3), 0.0)
    y = torch.stack([torch.zeros(3, 3), torch.ones(3, 3)]).long()  # a's label 0 (wrong), b's label 1 (wrong)
    loss, logs = m.training_step({"x_l": torch.cat([a, b]), "y_l": y, "x_u": torch.rand(2, 1, 3, 3)}, 4)
    (x,) = m.student.seen
    inside = torch.zeros(3, 3, dtype=torch.bool)
    inside[:2, :2] = True
    assert torch.equal(x[0, 0], torch.where(inside, 0.0, 1.0))  # a outside, b inside
    assert m.stage == "pretrain" and loss.item() == pytest.approx((2 + 2 * L) / 2, rel=1e-4)  # both weights 1


def test_bcp_reference_masked_dice_leaves_background_unmasked():
    mask = torch.ones(3, 3)
    mask[:2, :2] = 0
    # class 0 predicted inside the box, class 1 outside; labels 1 everywhere, only the outside counts (w_in 0)
    logits = torch.stack([torch.where(mask == 0, L, 0.0), torch.where(mask == 0, 0.0, L)])[None]
    y = torch.ones(1, 3, 3)
    fixed, _ = mix_loss(logits, y, y, mask, 1.0, 0.0, masking="all")
    ref, _ = mix_loss(logits, y, y, mask, 1.0, 0.0, masking="foreground")
    # fixed: outside, both classes right -> 0. Reference: the background channel sees the whole image, where the 4
    # box pixels predict class 0 against target 0 -> loss 1 for class 0, 0 for class 1, mean 0.5
    assert fixed.item() == pytest.approx(0.0, abs=1e-6)
    assert ref.item() == pytest.approx(0.5, abs=1e-6)


def test_largest_connected_component_per_class():
    lab = torch.tensor([[[1, 1, 0, 1],
                         [1, 0, 0, 0],
                         [0, 0, 2, 0],
                         [2, 0, 0, 2]]])
    out = largest_cc(lab, 3)
    # class 1: a 3-pixel component and a single pixel; class 2: three singletons (diagonal ones touch: full
    # connectivity joins (2,2) and (3,3)), the first largest is kept
    assert out.tolist() == [[[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 2, 0], [0, 0, 0, 2]]]


# ---------------------------------------------------------------------------------------------- FixMatch/UniMatch

class Enc(nn.Module):
    """encode -> [x, 2x]; decode -> sum of per-feature channel means, counting calls."""

    spatial_dims = 2

    def __init__(self):
        super().__init__()
        self.calls = {"encode": 0, "decode": 0}

    def encode(self, x):
        self.calls["encode"] += 1
        return [x.repeat(1, 4, 1, 1), 2 * x.repeat(1, 4, 1, 1)]

    def decode(self, feats):
        self.calls["decode"] += 1
        return feats[0] + feats[1]


def test_unimatch_perturbs_encoder_features_through_one_shared_decoder_pass():
    torch.manual_seed(0)
    net, x = Enc(), torch.ones(3, 1, 2, 2)
    clean, fp = decode_with_fp(net, x, lambda f: torch.nn.functional.dropout2d(f, 0.5, training=True))
    assert net.calls == {"encode": 1, "decode": 1}
    assert torch.equal(clean, torch.full((3, 4, 2, 2), 3.0))  # x + 2x, untouched
    # each channel of each feature is dropped (0) or scaled by 1/(1-p) = 2: values in {0, 2, 4, 6}
    assert set(fp.unique().tolist()) <= {0.0, 2.0, 4.0, 6.0} and len(set(fp.unique().tolist())) > 1
    assert (fp == fp[:, :, :1, :1]).all()  # whole channels, not pixels (Dropout2d)


def const_logits(n_classes=2):
    class Const(nn.Module):
        spatial_dims = 2

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, n_classes, 1)

        def forward(self, x):
            return self.decode(self.encode(x))

        def encode(self, x):
            return [self.conv(x)]

        def decode(self, feats):
            return feats[0]
    return Const


def test_unimatch_loss_weights_and_targets(monkeypatch):
    import sslseg.methods.unimatch as um

    m = build_method("unimatch", const_logits(), method_params("unimatch"), 10, 2)
    calls = []

    def fake_unsup(logits, pseudo, conf):
        calls.append((pseudo.clone(), conf.clone()))
        return torch.tensor([10.0, 100.0, 1000.0][len(calls) - 1])

    monkeypatch.setattr(m, "unsup_loss", fake_unsup)
    monkeypatch.setattr(um, "sup_loss", lambda logits, y: torch.tensor(1.0))
    boxes = [torch.zeros(2, 4, 4), torch.ones(2, 4, 4)]
    monkeypatch.setattr(m, "strong_views", lambda x_u, x_mix: ([x_u, x_u], boxes))
    lab_mix = torch.full((2, 4, 4), 7)
    monkeypatch.setattr(m, "mix_targets", lambda x_mix: (torch.full((2, 4, 4), 0.5), lab_mix))
    batch = {"x_l": torch.rand(2, 1, 4, 4), "y_l": torch.zeros(2, 4, 4).long(), "x_u": torch.rand(2, 1, 4, 4),
             "x_u_mix": torch.rand(2, 1, 4, 4)}
    loss, _ = m.training_step(batch, 0)
    assert loss.item() == pytest.approx((1 + 0.25 * 10 + 0.25 * 100 + 0.5 * 1000) / 2)
    (p1, c1), (p2, c2), (pfp, cfp) = calls
    assert (p1 != 7).all() and (p2 == 7).all() and (c2 == 0.5).all()  # box 2 covers everything: mix targets
    assert torch.equal(pfp, p1) and (pfp != 7).all()  # the FP stream learns the weak pseudo-labels, not CutMix


def test_fixmatch_ignores_low_confidence_pixels():
    m = build_method("fixmatch", const_logits(), method_params("fixmatch"), 10, 2)
    probs_target = torch.tensor([[[0, 1], [1, 0]]])
    logits = torch.zeros(1, 2, 2, 2)
    conf = torch.tensor([[[0.99, 0.96], [0.5, 0.94]]])  # only the first row passes 0.95
    loss = m.unsup_loss(logits, probs_target, conf)
    # kept pixels: probabilities 0.5/0.5, targets 0 and 1. Per class: inter 0.5, sum p^2 0.5, sum t^2 1 ->
    # 1 - (1 + s)/(1.5 + s) = 1/3 for both classes
    assert loss.item() == pytest.approx(1 / 3, rel=1e-4)


def test_fixmatch_loss_is_half_supervised_plus_strong(monkeypatch):
    import sslseg.methods.fixmatch as fm

    m = build_method("fixmatch", const_logits(), method_params("fixmatch"), 10, 2)
    monkeypatch.setattr(m, "unsup_loss", lambda *a: torch.tensor(4.0))
    monkeypatch.setattr(fm, "sup_loss", lambda logits, y: torch.tensor(2.0))
    batch = {"x_l": torch.rand(2, 1, 8, 8), "y_l": torch.zeros(2, 8, 8).long(), "x_u": torch.rand(2, 1, 8, 8),
             "x_u_mix": torch.rand(2, 1, 8, 8)}
    loss, _ = m.training_step(batch, 0)
    assert loss.item() == pytest.approx(3.0)


def test_strong_methods_refuse_3d(tiny, prepared, tmp_path):
    from sslseg import SslsegError

    assert METHODS["fixmatch"].spatial_dims == METHODS["unimatch"].spatial_dims == (2,)
    with pytest.raises(SslsegError, match="'unimatch' is defined for 2D benchmarks; dataset 'synth3d' is 3D"):
        fit(tiny["synth3d"], "unimatch", 2, 0, prepared["synth3d"], tmp_path / "run")
    assert not (tmp_path / "run").exists()
