"""SSCD's distinctive mechanisms by hand on tiny tensors: the stages and their HCA weights, the pseudo-variance
gate, the entropy mask, the one-hot masked Dice of the reference, a CGSR paste (both branches), the central disk,
the strong view's cutout, the alternating EMA teacher and the stage seeding."""

import math

import pytest
import torch
import torch.nn as nn

from conftest import SSCD_NET, build_method, fit
from sslseg import SslsegError
from sslseg.methods import Stage
from sslseg.methods.bcp import region_dice
from sslseg.methods.sscd import central_disk, displace, entropy_mask, patch_disk, pseudo_variance_gate
from sslseg.models import build_model


SSCD_HEADS = dict(SSCD_NET, deep_supervision=True)


def sscd(params=None, iterations=410000):
    return build_method("sscd", lambda: build_model(SSCD_HEADS, 2, 1, 4), params, iterations, n_classes=4)


def test_stages_split_the_paper_schedule():
    m = sscd()  # 10k pre-training + 5 x 80k
    assert [(s.name, s.start) for s in m.stages()] == [
        ("pretrain", 0), ("S1", 10000), ("S2", 90000), ("S3", 170000), ("S4", 250000), ("S5", 330000)]
    assert all(s.restore_best and s.reset_optimisers for s in m.stages()[1:])
    assert [s.name for s in sscd({"pretrain": 0.0}, 1000).stages()] == ["S1", "S2", "S3", "S4", "S5"]


class Heads(nn.Module):
    """forward_aux with constant outputs: full 1000, 1/2 head 1, 1/4 head 10, 1/8 head 100 (at their sizes)."""

    ds_heads = (0, 1, 2)

    def forward_aux(self, x):
        n, _, h, w = x.shape
        return torch.full((n, 4, h, w), 1000.0), {"down2": torch.full((n, 4, h // 2, w // 2), 1.0),
                                                  "down4": torch.full((n, 4, h // 4, w // 4), 10.0),
                                                  "down8": torch.full((n, 4, h // 8, w // 8), 100.0)}


def test_hca_weights_per_stage_over_half_quarter_eighth_full():
    m = sscd({"pretrain": 0.0}, 1000)
    expected = {"S1": 1.0, "S2": 0.5 * 1 + 0.5 * 10, "S3": 0.5 * 10 + 0.5 * 100, "S4": 0.5 * 100 + 0.5 * 1000,
                "S5": 1000.0}
    for stage, value in expected.items():
        m.stage = stage
        logits, r = m.outputs(Heads(), torch.zeros(2, 1, 16, 16))
        assert r.shape == logits.shape == (2, 4, 16, 16)
        assert torch.all(r == value), stage


def test_pseudo_variance_gate_by_hand():
    p = torch.tensor([0.6, 0.35, 0.04, 0.01])
    logits = p.log().view(1, 4, 1, 1)
    # PV = (3/4) sum_c (p_c - (1 - p_c)/3)^2 = (3/4)(0.4667^2 + 0.1333^2 + 0.28^2 + 0.32^2) = 0.3123
    pv = 0.75 * sum((pc - (1 - pc) / 3) ** 2 for pc in p.tolist())
    assert pv == pytest.approx(0.31227, abs=1e-4)
    assert pseudo_variance_gate(logits, 0.30, 0.30).item() == 1  # PV > 0.30 and p2 = 0.35 > 0.30: second class
    assert pseudo_variance_gate(logits, 0.32, 0.30).item() == 0  # PV below its threshold
    assert pseudo_variance_gate(logits, 0.30, 0.36).item() == 0  # p2 below its threshold
    assert pseudo_variance_gate(logits, 0.8, 0.3).item() == 0  # the paper's thresholds: argmax
    # at 0.8 / 0.3 it can never fire: p2 > 0.3 keeps PV below sum p^2 <= 0.58
    torch.manual_seed(0)
    rand = torch.randn(64, 4, 8, 8) * 3
    assert torch.equal(pseudo_variance_gate(rand, 0.8, 0.3), rand.argmax(1))


def test_entropy_mask_keeps_the_most_uncertain_pixels():
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.9, 0.1], [0.7, 0.3]]).T.reshape(1, 2, 2, 2)
    # entropies 0, 0.693, 0.325, 0.611; k = int(0.5 * 4) = 2: at least the 2nd smallest (0.325) -> 3 pixels
    assert entropy_mask(probs, 0.5).flatten().tolist() == [0.0, 1.0, 1.0, 1.0]
    # k = 1: at least the 3rd smallest (0.611)
    assert entropy_mask(probs, 0.25).flatten().tolist() == [0.0, 1.0, 0.0, 1.0]


def test_onehot_masked_dice_of_the_reference():
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]]).T.reshape(1, 3, 1, 2)
    y = torch.tensor([[[0, 1]]])
    region = torch.tensor([[[1, 0]]])  # scored: the first pixel
    # every channel masked: channel 0 at pixel 1 (label 0): 1 - 2 x 0.5 / (0.25 + 1) = 0.2; channels 1, 2: 1
    assert region_dice(probs, y, region, "all").item() == pytest.approx((0.2 + 1 + 1) / 3)
    # one-hot mask: channel 0 on the complement (pixel 2, label 1: 1), channel 1 on the region (1), channel 2
    # nowhere (1 - s/s = 0)
    assert region_dice(probs, y, region, "onehot").item() == pytest.approx(2 / 3)


def test_patch_and_central_disks():
    assert patch_disk(2).tolist() == [[0.0, 1.0], [1.0, 1.0]]  # radius 1 around (1, 1)
    d = central_disk(8, 8, 2)  # centre (4, 4), square rows/cols 2..5, x^2 + y^2 <= 4
    assert d.sum().item() == 11
    assert d[4, 4] and d[2, 4] and d[4, 2] and not d[2, 2] and not d[6, 4] and not d[4, 6]


def _views():
    """Two 4 x 4 views on a 2 x 2 grid of 2 x 2 patches (cells c0 c1 / c2 c3) with constant values."""
    x1 = torch.tensor([[10.0, 11.0], [12.0, 13.0]]).repeat_interleave(2, 0).repeat_interleave(2, 1)
    x2 = x1 + 10
    # patch mean confidence [[0, 0.5], [0.2, 0.1]]: neighbour differences c0 0.35, c1 0.45, c2 0.15, c3 0.25
    conf = torch.tensor([[0.0, 0.5], [0.2, 0.1]]).repeat_interleave(2, 0).repeat_interleave(2, 1)
    # mean R per cell (2 classes): view 1 c1 [0, 3], c2 [0, 0], c3 [2, 0]; view 2 c1 [2, 0], c2 [0, 3], c3 [1, 1]
    r1 = torch.tensor([[[0.0, 0.0], [0.0, 3.0]], [[0.0, 0.0], [2.0, 0.0]]])  # (2 rows, 2 cols, class)
    r2 = torch.tensor([[[0.0, 0.0], [2.0, 0.0]], [[0.0, 3.0], [1.0, 1.0]]])

    def grid(t):
        return t.permute(2, 0, 1).repeat_interleave(2, 1).repeat_interleave(2, 2).unsqueeze(0)

    return x1.view(1, 1, 4, 4), x2.view(1, 1, 4, 4), conf.view(1, 4, 4), conf.view(1, 4, 4), grid(r1), grid(r2)


def test_cgsr_paste_easiest_branch():
    x1, x2, c1, c2, r1, r2 = _views()
    out = displace(x1, x2, c1, c2, r1, r2, grid=2, top_k=2, kl_branch=torch.tensor([False]))
    # view 1: view 2's hardest patch (c1, 21) pasted inside the disk [[0, 1], [1, 1]] of view 1's easiest (c2)
    assert out[0, 0].tolist() == [[10, 10, 11, 11], [10, 10, 11, 11], [12, 21, 13, 13], [21, 21, 13, 13]]
    # view 2: view 1's hardest patch (c1, 11) into view 2's easiest (c2)
    assert out[1, 0].tolist() == [[20, 20, 21, 21], [20, 20, 21, 21], [22, 11, 23, 23], [11, 11, 23, 23]]


def test_cgsr_paste_kl_branch_picks_the_closest_easy_patch():
    x1, x2, c1, c2, r1, r2 = _views()
    out = displace(x1, x2, c1, c2, r1, r2, grid=2, top_k=2, kl_branch=torch.tensor([True]))
    # view 1's two easiest cells c2, c3; view 2's hardest (c1) has mean R [2, 0]: KL 0 to c3 ([2, 0]), > 0 to c2
    assert out[0, 0].tolist() == [[10, 10, 11, 11], [10, 10, 11, 11], [12, 12, 13, 21], [12, 12, 21, 21]]
    # view 2: view 1's hardest (c1) has mean R [0, 3]: view 2's c2 ([0, 3]) rather than c3 ([1, 1])
    assert out[1, 0].tolist() == [[20, 20, 21, 21], [20, 20, 21, 21], [22, 11, 23, 23], [11, 11, 23, 23]]


def test_cgsr_needs_square_patches_on_the_grid():
    x = torch.zeros(1, 1, 12, 12)
    with pytest.raises(SslsegError, match="8 x 8 grid"):
        displace(x, x, x[:, 0], x[:, 0], x, x, grid=8, top_k=4, kl_branch=torch.tensor([True]))


def test_strong_view_cuts_out_image_and_label():
    m = sscd({"jitter": 0.0, "hue": 0.0, "p_cutout": 1.0})
    torch.manual_seed(0)
    x, y = torch.full((2, 1, 32, 32), 0.5), torch.ones(2, 32, 32, dtype=torch.long)
    xs, ys = m.strong(x, y)
    cut = ys == 0
    assert cut.any(dim=(1, 2)).all()
    assert set(xs[:, 0][cut].unique().tolist()) <= {0.0, 1.0} and torch.all(xs[:, 0][~cut] == 0.5)
    ref = sscd({"jitter": 0.0, "hue": 0.0, "p_cutout": 1.0, "reference_cutout": True})
    torch.manual_seed(0)
    xs, ys = ref.strong(x, y)
    assert (ys == 0).any() and torch.all(xs == 0.5)  # the reference cuts the label only


def _fill(net, value):
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(value)


def test_teacher_is_an_ema_of_the_students_in_turn():
    m = sscd({"pretrain": 0.0}, 1000)
    m.stage = "S1"
    _fill(m.student, 1.0)
    _fill(m.second, 3.0)
    _fill(m.teacher, 0.0)
    m.after_step(0)  # t = 1: the first student, decay min(1 - 1/2, 0.99) = 0.5
    w = next(m.teacher.parameters())
    assert torch.allclose(w, torch.tensor(0.5))
    m.after_step(1)  # t = 2: the second student, decay 2/3
    assert torch.allclose(w, torch.tensor(2 / 3 * 0.5 + 1 / 3 * 3.0))
    m.stage = "S2"  # S2 starts at 200: its iteration 1 is the first student's again
    m.after_step(200)
    assert torch.allclose(w, torch.tensor(0.5 * (2 / 3 * 0.5 + 1.0) + 0.5 * 1.0))
    frozen = sscd({"pretrain": 0.0, "frozen_teacher": True}, 1000)
    frozen.stage = "S1"
    before = [p.clone() for p in frozen.teacher.parameters()]
    _fill(frozen.student, 1.0)
    frozen.after_step(0)
    assert all(torch.equal(a, b) for a, b in zip(before, frozen.teacher.parameters()))


def test_stage_two_starts_from_the_best_second_student():
    m = sscd({"pretrain": 0.0}, 1000)
    _fill(m.student, 1.0)
    best_second = build_model(SSCD_HEADS, 2, 1, 4)
    _fill(best_second, 2.0)
    m.best_states = {"second": best_second.state_dict()}
    m.begin_stage(Stage("S2", 200))
    assert all(torch.all(p == 2.0) for net in (m.student, m.second, m.teacher) for p in net.parameters())
    _fill(m.student, 5.0)
    m.begin_stage(Stage("S3", 400))  # later stages: the (restored) best first student
    assert all(torch.all(p == 5.0) for net in (m.student, m.second, m.teacher) for p in net.parameters())
    m.stage = "S1"
    assert m.also_validate() == ("second",)  # only S1's second student is validated: its best seeds S2
    m.stage = "S3"
    assert m.also_validate() == ()


def test_sscd_needs_the_heads_and_warm_starts_without_them(tiny, prepared, tmp_path):
    b = tiny["synth2d"]
    b["schedule"].update(iterations=6, batch_labelled=2)
    b["networks"] = {"sscd": {"student": dict(SSCD_NET, deep_supervision=False)}}
    with pytest.raises(SslsegError, match="must be|deep-supervision"):
        fit(b, "sscd", 1, 0, prepared["synth2d"], tmp_path / "x")
    # warm start from a supervised UNet without heads: the heads keep their initialisation
    b = tiny["synth2d"]
    b["schedule"].update(iterations=6, batch_labelled=2)
    b["validation"] = {"every": 0, "selection": "last"}  # no validation passes: this test is about loading
    b["model"] = SSCD_NET
    b["networks"] = {}
    b["warm_start"] = {"from": "supervised", "iterations": 5}
    b["hparams"] = {"sscd": {"pretrain": 0.0}}
    b["methods"] = ["supervised", "sscd"]
    sup = fit(b, "supervised", 1, 0, prepared["synth2d"], tmp_path / "sup")
    from sslseg.config import run_spec, validate
    from sslseg.train import train

    cfg = validate({"benchmarks": {"t": b}})
    out = train(run_spec(cfg, "t", "sscd", 1, 0), prepared["synth2d"], tmp_path / "sscd", init=sup)
    ck = torch.load(out, weights_only=True)
    assert ck["networks"]["student"]["model"]["deep_supervision"] is True
    assert math.isfinite(ck["info"]["selected_iteration"])
