"""Hsu & Hua's edge-guided dual-teacher BCP: the Sobel edge map, the pyramid level and the EGA/CBAM sizes of the
edge-guided UNet; the shrinking box, the dynamic teacher's decay per budget, the static teacher's period rule and
the pseudo-labels of the two teachers -- by hand on tiny tensors; the same pieces in 3D and the edge-guided VNet."""

import dataclasses
import math

import pytest
import torch
import torch.nn as nn

from conftest import build_method, fit
from sslseg import SslsegError
from sslseg.methods import method_params
from sslseg.methods.egm_dt import next_period
from sslseg.models import build_model, model_spec
from sslseg.models.egm import CBAM, blur_kernel, laplace_level, sobel_edges


def test_sobel_edges_by_hand():
    x = torch.zeros(1, 1, 4, 4)
    x[..., 2:] = 1.0  # a vertical step between columns 1 and 2
    e = sobel_edges(x)[0, 0]
    # interior rows: gx = (x[., c+1] - x[., c-1]) weighted 1, 2, 1 over three rows -> 4 at columns 1 and 2; gy = 0
    assert e[1].tolist() == [0.0, 4.0, 4.0, 4.0]  # column 3: zero padding on the right, |0 - 1| x 4
    # top row: the zero-padded row above weighs 0, so gx = (2 + 1) x 1 = 3 at column 1, and gy = x[1, 2] x 1 = 1
    # (column 2 of the row below, through the kernel's corner): sqrt(9 + 1)
    assert e[0, 1].item() == pytest.approx(math.sqrt(10))
    # RGB: the grey image 0.299 R + 0.587 G + 0.114 B; a step in G alone gives 0.587 x the grey step's edges
    rgb = torch.zeros(1, 3, 4, 4)
    rgb[:, 1, :, 2:] = 1.0
    torch.testing.assert_close(sobel_edges(rgb), 0.587 * sobel_edges(x))


@pytest.mark.parametrize("mode", ["aligned", "reference"])
def test_pyramid_level_of_a_constant_is_zero(mode):
    # the reduce/expand gain: a constant c is blurred to c, decimated, zero-inserted (c on even rows and columns)
    # and blurred by 4 G, whose taps on even offsets sum to 4 (1 + 6 + 1)^2 / 256 = 1: the level p - u is 0
    p = torch.full((1, 3, 16, 16), 0.7)
    assert laplace_level(p, mode).abs().max() < 1e-6
    # a gain of 2 (wrong for 2D) would leave p / 2
    ramp = torch.linspace(0, 1, 16).repeat(1, 1, 16, 1)
    # the reference shrinks by 8 pixels without padding and stretches back: it differs from the aligned level
    assert not torch.allclose(laplace_level(ramp, "aligned"), laplace_level(ramp, "reference"), atol=1e-3)


def test_pyramid_level_needs_a_minimum_stage_size():
    with pytest.raises(ValueError, match="laplace: reference needs decoder stages of at least 9 voxels"):
        laplace_level(torch.rand(1, 1, 8, 8), "reference")
    assert laplace_level(torch.rand(1, 1, 8, 8), "aligned").shape == (1, 1, 8, 8)


def test_edge_guided_unet_sizes_match_the_reference():
    net = build_model({"name": "egm_unet"}, 2, 1, 4)
    # counted in the reference UNet_2d(1, 4) without its unused contrastive heads and frozen Sobel weights
    assert sum(p.numel() for p in net.parameters()) == 2_407_547
    # each EGA: fusion conv 3C -> C (3x3) + BN, attention conv C -> 1 + BN, CBAM MLP C -> C/16 -> C, 7x7 gate
    def ega(c):
        h = max(c // 16, 1)
        return (9 * 3 * c * c + c) + 2 * c + (9 * c + 1) + 2 + (c * h + h + h * c + c) + (2 * 49 + 1)
    assert [sum(p.numel() for p in e.parameters()) for e in net.ega] == [ega(c) for c in (128, 64, 32, 16)] == [
        446_190, 112_042, 28_296, 7_255]
    # the UNet part is the reference decoder with nearest upsampling: no parameters of its own
    ups = [m for m in net.modules() if isinstance(m, nn.Upsample)]
    assert [u.mode for u in ups] == ["nearest"] * 4
    assert net(torch.rand(2, 1, 64, 64)).shape == (2, 4, 64, 64)
    assert CBAM(16).mlp[1].out_features == 1 and CBAM(8).mlp[1].out_features == 1  # at least one hidden unit
    with pytest.raises(SslsegError, match="deep_supervision is not defined for egm_unet"):
        model_spec({"name": "egm_unet", "deep_supervision": True})


def tiny_net():
    return build_model({"name": "egm_unet", "channels": [4, 8, 16], "dropout": [0.0, 0.0, 0.0]}, 2, 1, 4)


def method(budget=3, iterations=40, **hp):
    m = build_method("egm_dt", tiny_net, method_params("egm_dt", hp), iterations, 4)
    m.budget = budget
    m.setup()
    return m


def enter(m, name):
    stage = next(s for s in m.stages() if s.name == name)
    m.stage = name
    m.begin_stage(stage)


def test_box_shrinks_linearly_within_each_stage():
    m = method(iterations=40, pretrain=0.25)  # pre-training 0-9, self-training 10-39
    enter(m, "pretrain")
    assert m.box_fraction(0) == pytest.approx(2 / 3)
    assert m.box_fraction(5) == pytest.approx(2 / 3 - 0.5 / 3)  # half way: 1/2
    enter(m, "self-train")
    assert m.box_fraction(10) == pytest.approx(2 / 3)  # restarts with the stage
    assert m.box_fraction(25) == pytest.approx(0.5)
    # on a 256 x 256 slice at the last of 30k iterations: int(256 (2/3 - (29999/30000) / 3)) = 85 pixels
    assert int(256 * (2 / 3 - 29999 / 30000 / 3)) == 85


def test_dynamic_teacher_decay_per_budget():
    assert method(budget=3).decay == 0.89 and method(budget=7).decay == 0.95
    assert method(budget=4).decay == 0.99 and method(budget=3, ema_decay=0.9).decay == 0.9
    # the dynamic teacher moves by (1 - 0.89) towards the student every self-training iteration
    m = method(budget=3, pretrain=0.0)
    enter(m, "self-train")
    with torch.no_grad():
        for p in m.student.parameters():
            p.fill_(1.0)
        for p in m.teacher.parameters():
            p.zero_()
    m.after_step(0)
    assert all(torch.allclose(p, torch.full_like(p, 0.11)) for p in m.teacher.parameters())


def test_static_teacher_period_rule():
    # 1000 -> +500 on a new best, at most 2000; -500 otherwise, at least 500
    seq, period = [], 1000
    for improved in (True, True, True, False, False, False, False):
        period = next_period(period, improved, 500, 500, 2000)
        seq.append(period)
    assert seq == [1500, 2000, 2000, 1500, 1000, 500, 500]


def test_static_teacher_copies_the_student_when_the_counter_reaches_the_period():
    # 60 self-training iterations: period 1/30 -> 2 iterations, step 1/60 -> 1, bounds [1, 4]
    m = method(iterations=60, pretrain=0.0)
    enter(m, "self-train")
    copies = []
    m.static.load_state_dict = lambda sd, _orig=m.static.load_state_dict: (copies.append(step), _orig(sd))[1]
    validations = {1: (0.5, True), 3: (0.6, True), 6: (0.5, False)}
    for step in range(9):
        m.end_iteration(step, validations.get(step))
    # step 0: counter 1; 1: period 2 -> 3 (best), counter 2; 2: counter 3 -> copy; 3: period 4 (best), counter 1;
    # 4: 2; 5: 3; 6: period 3 (no best), counter 4 >= 3 -> copy; 7: 1; 8: 2
    assert copies == [2, 6] and m.period == 3 and m.counter == 2
    assert m.state() == {"counter": 2, "period": 3}


class Const(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits)

    def forward(self, x):
        return self.logits.view(1, -1, 1, 1).expand(len(x), -1, *x.shape[2:])


def test_pseudo_labels_average_the_two_teachers_logits():
    m = method()
    # static alone says class 1, dynamic alone class 3; their mean (0, 2, 3.5, 2) says class 2
    m.static, m.teacher = Const([0.0, 4.0, 3.5, 0.0]), Const([0.0, 0.0, 3.5, 4.0])
    pa, pb = m.pseudo_labels(torch.zeros(2, 1, 3, 3), torch.zeros(2, 1, 3, 3))
    assert (pa == 2).all() and (pb == 2).all()


def test_sobel_edges_in_3d_by_hand():
    # f = x + 2 z (array order z, y, x): away from the border each derivative kernel sees f(+1) - f(-1) along its
    # axis, weighted by the 1-2-1 x 1-2-1 smoothing (sum 16) on the other two: gx = 2 x 16, gz = 4 x 16, gy = 0
    z, y, x = torch.meshgrid(*(torch.arange(6.0),) * 3, indexing="ij")
    e = sobel_edges((x + 2 * z)[None, None])[0, 0]
    assert e[1:-1, 1:-1, 1:-1].unique().tolist() == [pytest.approx(math.sqrt(32 ** 2 + 64 ** 2))]
    # the 2D kernels are the same construction: [-1, 0, 1] along x, [1, 2, 1] along y
    step = torch.zeros(1, 1, 3, 3)
    step[..., 2] = 1.0
    assert sobel_edges(step)[0, 0, 1, 1].item() == 4.0


def test_blur_kernels_by_hand():
    # aligned: the 5-tap binomial along every axis; centre (6/16)^3, corner (1/16)^3
    k = blur_kernel(3)
    assert k.shape == (5, 5, 5) and k.sum().item() == pytest.approx(1.0)
    assert k[2, 2, 2].item() == pytest.approx(0.052734375) and k[0, 0, 0].item() == pytest.approx(1 / 4096)
    assert torch.equal(blur_kernel(2), torch.outer(*(torch.tensor([1.0, 4, 6, 4, 1]),) * 2) / 256)
    # reference 3D: Gaussian sigma 1.5 on a 3x3x3 grid, normalised: 1D taps exp(-1/4.5) = 0.800737, 1, 0.800737
    r = blur_kernel(3, "reference")
    z = (1 + 2 * 0.8007374) ** 3
    assert r[1, 1, 1].item() == pytest.approx(1 / z, rel=1e-6) and r[0, 0, 0].item() == pytest.approx(
        0.8007374 ** 3 / z, rel=1e-6)


def test_pyramid_level_in_3d_by_hand():
    c = 0.3
    p = torch.full((1, 2, 8, 8, 8), c)
    # aligned: the zero-inserted samples blurred with 8 x the binomial give c back everywhere (taps on even
    # offsets sum to 1/2 per axis): L = 0
    assert laplace_level(p).abs().max().item() < 1e-6
    # reference: the reduced volume (c inside, less at the zero-padded first samples) sits in the first octant of
    # a zero volume and is blurred with 4 x the Gaussian: deep in the octant u = 4c (L = c - 4c), outside it u = 0
    lv = laplace_level(p, "reference")[0, 0]
    assert lv[2, 2, 2].item() == pytest.approx(-3 * c, rel=1e-5) and lv[6, 6, 6].item() == pytest.approx(c)
    # odd sizes: the expansion is resized back to the stage's size
    assert laplace_level(torch.rand(1, 3, 7, 9, 5)).shape == (1, 3, 7, 9, 5)


def test_edge_guided_vnet_sizes_match_the_reference():
    net = build_model({"name": "egm_vnet"}, 3, 1, 2)
    # the UA-MT VNet (9,448,866) + the edge projection 1 -> 128 (256) + the stage projections 128 -> 64, 32, 16
    # (8,256 + 4,128 + 2,064) + one EGA per decoder stage (3D: 27-tap convolutions, 343-tap spatial gate)
    def ega(c):
        h = max(c // 16, 1)
        return (27 * 3 * c * c + c) + 2 * c + (27 * c + 1) + 2 + (c * h + h + h * c + c) + (2 * 343 + 1)
    assert [ega(c) for c in (128, 64, 32, 16)] == [1_333_818, 334_966, 84_756, 21_955]
    assert [sum(p.numel() for p in e.parameters()) for e in net.ega] == [ega(c) for c in (128, 64, 32, 16)]
    # = the reference VNet(1, 2) of VNet_la_ega.py (11,290,942) less its unused projection / prediction heads,
    # class selectors and never-called stage projections (51,877)
    assert sum(p.numel() for p in net.parameters()) == 9_448_866 + 256 + 14_448 + 1_775_495 == 11_239_065
    # dropout as the reference: Dropout3d 0.4 on the fourth encoder stage, 0.5 on the fifth and before the output
    assert [getattr(d, "p", 0) for d in net.enc_dropout] == [0, 0, 0, 0.4, 0.5] and net.dropout.p == 0.5
    assert all(e.drop_fused.p == 0.4 and e.drop_out.p == 0.4 for e in net.ega)
    x = torch.rand(1, 1, 48, 48, 32)  # the deepest decoder stage (1/8) at 6 x 6 x 4: wide enough to reflect-pad
    net.eval()
    y = net(x)
    assert y.shape == (1, 2, 48, 48, 32) and torch.equal(y, net(x))
    plain = build_model({"name": "egm_vnet", "has_dropout": False}, 3, 1, 2)
    assert not any(isinstance(d, nn.Dropout3d) for d in plain.enc_dropout)


def test_edge_guided_unet_in_3d():
    net = build_model({"name": "egm_unet", "channels": [4, 8, 16], "dropout": [0.0, 0.0, 0.0]}, 3, 1, 2)
    assert net(torch.rand(2, 1, 16, 24, 24)).shape == (2, 2, 16, 24, 24)
    assert isinstance(net.ega[0].cbam.spatial, nn.Conv3d) and net.ega[0].cbam.spatial.kernel_size == (7, 7, 7)


def test_loss_weights_of_the_pancreas_setting():
    """``pretrain_dice_weight`` / ``mix_dice_weight``: the loss is w Dice + (1 - w) CE of the logged parts
    (Hsu & Hua on Pancreas: 0.55 in pre-training, 0.42 in self-training; BCP: 1/2 and 1/2)."""
    torch.manual_seed(0)
    m = method(iterations=40, pretrain=0.25, pretrain_dice_weight=0.55, mix_dice_weight=0.42)
    batch = {"x_l": torch.rand(2, 1, 32, 32), "y_l": torch.randint(0, 4, (2, 32, 32)),
             "x_u": torch.rand(2, 1, 32, 32)}
    for stage, step, w in (("pretrain", 0, 0.55), ("self-train", 10, 0.42)):
        enter(m, stage)
        loss, logs = m.training_step(batch, step)
        assert loss.item() == pytest.approx(w * logs["loss_dice"] + (1 - w) * logs["loss_ce"], rel=1e-6)
    from sslseg.params import params_dict

    assert "mix_dice_weight" not in params_dict(method_params("bcp", {}))  # at BCP's 1/2: not in identities
    assert params_dict(method_params("bcp", {"mix_dice_weight": 0.42}))["mix_dice_weight"] == 0.42


def test_pancreas_network_drops_after_every_deep_encoder_convolution():
    net = build_model({"name": "egm_vnet", "normalization": "instancenorm", "has_dropout": False,
                       "ega_dropout": 0.3, "conv_dropout": [0.4, 0.5]}, 3, 1, 2)
    for stage, rate in ((net.enc[3], 0.4), (net.enc[4], 0.5)):
        drops = [d.p for d in stage.conv if isinstance(d, nn.Dropout3d)]
        kinds = [type(layer).__name__ for layer in stage.conv]
        assert drops == [rate] * 3 and kinds[:4] == ["Conv3d", "InstanceNorm3d", "ReLU", "Dropout3d"]
    assert all(isinstance(d, nn.Identity) for d in net.enc_dropout) and isinstance(net.dropout, nn.Identity)
    assert all(e.drop_fused.p == 0.3 for e in net.ega)
    with pytest.raises(SslsegError, match="conv_dropout two rates"):
        model_spec({"name": "egm_vnet", "conv_dropout": [0.4]})


def test_a_warm_start_from_the_plain_unet_of_the_same_layout_leaves_only_the_ega_blocks(tiny, prepared, tmp_path):
    """egm_dt warm-started from supervised (synthla): the edge-guided UNet at the supervised UNet's widths and
    upsampling takes every UNet weight; the EGA blocks, absent from the source, keep their initialisation. Another
    upsampling (transposed convolutions vs 1x1 convolution + nearest) is one clear error."""
    from sslseg.config import run_spec, validate
    from sslseg.train import train

    layout = {"name": "egm_unet", "channels": [4, 8, 16], "dropout": [0.0, 0.1, 0.2], "upsample": "transpose"}
    b = dict(tiny["synth2d"], model=dict(tiny["synth2d"]["model"], upsample="transpose"),
             networks={"egm_dt": {"student": layout}}, hparams={"egm_dt": {"pretrain": 0.0}},
             warm_start={"from": "supervised", "iterations": 2})
    sup = fit(b, "supervised", 1, 0, prepared["synth2d"], tmp_path / "sup")
    still = dict(b, schedule=dict(b["schedule"], lr=1e-12), validation={"every": 0, "selection": "last"})
    spec = run_spec(validate({"benchmarks": {"t": dict(still, methods=["supervised", "egm_dt"])}}), "t", "egm_dt", 1, 0)
    src_run = run_spec(validate({"benchmarks": {"t": b}}), "t", "supervised", 1, 0).hash
    spec = dataclasses.replace(spec, warm_start=dict(spec.warm_start, run=src_run))
    out = train(spec, prepared["synth2d"], tmp_path / "egm", init=sup)
    w0 = torch.load(sup, weights_only=True)["networks"]["student"]["state_dict"]
    w1 = torch.load(out, weights_only=True)["networks"]["student"]["state_dict"]
    assert {k.split(".")[0] for k in set(w1) - set(w0)} == {"ega"} and set(w0) <= set(w1)
    assert all(torch.allclose(w0[k].float(), w1[k].float(), atol=1e-6) for k in w0
               if "running" not in k and "num_batches" not in k)
    nearest = dict(b, networks={"egm_dt": {"student": dict(layout, upsample="nearest")}})
    with pytest.raises(SslsegError, match=r"sup/model.pt: network 'student' does not fit network 'student'"):
        fit(nearest, "egm_dt", 1, 0, prepared["synth2d"], tmp_path / "bad", init=sup)
