"""DEC-Seg: the Res2Net encoder's published size, the DCF gate and the cross-generative and scale-consistency losses
by hand, the two-scale view as DEC-Seg's scipy zoom, ImageNet weights read only from a verified local file, and a
training run in which the generators learn with the network but stay out of model.pt."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy import ndimage

from conftest import DECSEG_NET
from sslseg import SslsegError
from sslseg.methods.decseg import cross_generative, jitter, scale_consistency
from sslseg.models import build_model
from sslseg.models.decseg import DCF, Res2Net, small_size, zoom_nearest

TINY = DECSEG_NET  # one block per stage at 1/16 width


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_encoder_is_res2net50_v1b_26w_4s_by_its_published_size():
    enc = Res2Net()  # (3, 4, 6, 3) blocks, 26w x 4s, base 64
    # Res2Net's model zoo: res2net50_v1b_26w_4s has 25.7 M parameters with its 1000-class classifier (2048 x 1000
    # weights + 1000 biases), which DEC-Seg does not use
    assert n_params(enc) + 2048 * 1000 + 1000 == 25_718_352
    assert enc.channels == (64, 256, 512, 1024, 2048)
    widths = [stage[0].width for stage in (enc.layer1, enc.layer2, enc.layer3, enc.layer4)]
    assert widths == [26, 52, 104, 208]  # floor(planes * 26 / 64)
    feats = enc.eval()(torch.rand(1, 3, 64, 64))
    assert [f.shape[1:] for f in feats] == [(64, 32, 32), (256, 16, 16), (512, 8, 8), (1024, 4, 4), (2048, 2, 2)]


def test_small_scale_is_decsegs_rounding_and_scipy_nearest_zoom():
    assert (small_size(352), small_size(256), small_size(64)) == (192, 128, 32)  # round(5.5) = 6: 192, not 176
    x = torch.arange(3 * 29 * 37, dtype=torch.float32).reshape(1, 3, 29, 37)
    for size in ((13, 16), (29, 80), (64, 5)):
        ref = ndimage.zoom(x[0].numpy(), (1, size[0] / 29, size[1] / 37), order=0)
        assert np.array_equal(zoom_nearest(x, size)[0].numpy(), ref)


def _identity_cbr(block: nn.Sequential) -> None:
    """A 3x3 conv -> BN -> ReLU block that passes a one-channel map through its ReLU unchanged."""
    conv, bn = block[0], block[1]
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = 1.0
    bn.eps = 0.0


def test_dcf_gate_by_hand():
    dcf = DCF(1).eval()
    for block in (dcf.in1, dcf.in2, dcf.mix1, dcf.mix2):
        _identity_cbr(block)
    with torch.no_grad():
        dcf.gate[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]).view(2, 2, 1, 1))
    dcf.gate[1].eps = 0.0
    out = dcf(torch.tensor([[[[2.0]]]]), torch.tensor([[[[1.0]]]]))
    s = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    a1 = 2.0 + s(1.0) * 1.0  # f1 + sigmoid(f2) f2 = 2.7310586
    a2 = 1.0 + s(2.0) * 2.0  # f2 + sigmoid(f1) f1 = 2.7615942
    z0, z1 = max(a1, 0.0), max(-a2, 0.0)  # ReLU before the two-way softmax: z1 = 0
    g0 = math.exp(z0) / (math.exp(z0) + math.exp(z1))  # 0.9388347
    assert out.item() == pytest.approx(g0 * a1 + (1 - g0) * a2, abs=1e-6)
    assert out.item() == pytest.approx(2.7329263, abs=1e-6)


def test_cross_generative_and_scale_consistency_by_hand():
    g0, g1 = nn.Conv2d(2, 3, 1, bias=False), nn.Conv2d(2, 3, 1, bias=False)
    with torch.no_grad():
        g0.weight.fill_(0.5)  # G0(z) = (z0 + z1) / 2 in every channel
        g1.weight.zero_()
        g1.weight[:, 0] = 1.0  # G1(z) = z0 in every channel
    logits_u = torch.tensor([[[[1.0, 3.0]], [[-1.0, 1.0]]]])  # (1, 2, 1, 2): G0 -> 0, 2
    logits_up = torch.tensor([[[[0.5, 0.0]], [[9.0, 9.0]]]])  # G1 -> 0.5, 0
    x_u, x_up = torch.full((1, 3, 1, 2), 0.25), torch.full((1, 3, 1, 2), 1.0)
    # G0(u) against u^p: (0 - 1)^2, (2 - 1)^2 -> 1; G1(u^p) against u: (0.5 - 0.25)^2, (0 - 0.25)^2 -> 0.0625
    loss = cross_generative(nn.ModuleList([g0, g1]), logits_u, logits_up, x_u, x_up)
    assert loss.item() == pytest.approx(1.0 + 0.0625)

    p_large = torch.tensor([[[[0.9, 0.1], [0.5, 0.3]], [[0.1, 0.9], [0.5, 0.7]]]])
    p_small = torch.tensor([[[[0.5]], [[0.5]]]])  # one pixel: resized, 0.5 everywhere
    expected = ((0.4 ** 2 + 0.4 ** 2 + 0 + 0.2 ** 2) * 2) / 8
    assert scale_consistency(p_large, p_small).item() == pytest.approx(expected)


def test_perturbation_changes_brightness_and_hue_only():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 8, 8) * 0.5 + 0.25
    y = jitter(x, 0.2, 0.0)  # hue range 0: brightness alone, one factor per image in [0.8, 1.2]
    ratio = y / x
    assert torch.allclose(ratio, ratio.amax((1, 2, 3), keepdim=True), atol=1e-5)
    assert ((ratio.amax((1, 2, 3)) >= 0.8 - 1e-6) & (ratio.amax((1, 2, 3)) <= 1.2 + 1e-6)).all()


def test_imagenet_weights_come_from_a_verified_local_file(tmp_path):
    net = build_model(TINY, 2, 3, 2)
    net.init_pretrained()  # none named: nothing read
    source = Res2Net((1, 1, 1, 1), base=4)
    torch.save(source.state_dict(), tmp_path / "w.pth")
    from sslseg.data.download import sha256sum

    named = build_model({**TINY, "pretrained": str(tmp_path / "w.pth"),
                         "pretrained_sha256": sha256sum(tmp_path / "w.pth")}, 2, 3, 2)
    named.init_pretrained()
    assert all(torch.equal(a, b) for a, b in zip(named.encoder.state_dict().values(), source.state_dict().values()))
    # without a digest only the published checkpoint (its name's SHA-256 prefix) is accepted
    with pytest.raises(SslsegError, match=r"w.pth: sha256 [0-9a-f]{64} is not 3cf99910\.\.\."):
        build_model({**TINY, "pretrained": str(tmp_path / "w.pth")}, 2, 3, 2).init_pretrained()
    with pytest.raises(SslsegError, match="missing.pth: Res2Net ImageNet weights not found"):
        build_model({**TINY, "pretrained": str(tmp_path / "missing.pth")}, 2, 3, 2).init_pretrained()


def test_a_decseg_run_trains_the_generators_and_keeps_them_out_of_the_model(prepared, tmp_path):
    from conftest import fit

    from sslseg.infer import load_checkpoint

    bench = {"dataset": "synthpolyp", "methods": ["supervised", "decseg"], "labels": [4], "seeds": [0], "model": TINY,
             "hparams": {"decseg": {"generator_channels": [4, 8], "generator_dropout": [0.0, 0.0]}},
             "schedule": {"iterations": 3, "batch_labelled": 2, "batch_unlabelled": 2, "patch": [64, 64],
                          "augment": "none"}, "validation": {"every": 3}}
    model = fit(bench, "decseg", 4, 0, prepared["synthpolyp"], tmp_path / "run")
    ckpt = load_checkpoint(model)
    assert list(ckpt["networks"]) == ["student"]
    import csv

    log = list(csv.DictReader(open(tmp_path / "run" / "train_log.csv")))
    assert len(log) == 3 and all(float(r["loss_cc"]) > 0 and float(r["loss_spc"]) >= 0 for r in log)
