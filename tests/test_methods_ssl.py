"""Distinctive mechanisms of UA-MT and CPS on tiny tensors with hand-computed expectations.

The networks are 1x1 convolutions with zero weights, so their logits are their biases whatever the input (and
whatever noise is added): every probability below is known in closed form."""

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import build_method
from sslseg.methods import method_params
from sslseg.methods.common import sigmoid_rampup, sup_loss


def const_net(bias):
    net = torch.nn.Conv2d(1, len(bias), 1)
    with torch.no_grad():
        net.weight.zero_()
        net.bias.copy_(torch.tensor(bias))
    return net


def batch(n_l=2, n_u=3, n_classes=2, size=4):
    g = torch.Generator().manual_seed(0)
    return {"x_l": torch.randn(n_l, 1, size, size, generator=g),
            "y_l": torch.randint(0, n_classes, (n_l, size, size), generator=g),
            "x_u": torch.randn(n_u, 1, size, size, generator=g)}


# ------------------------------------------------------------------------------------------------------------ UA-MT

def test_uamt_threshold_schedule():
    m = build_method("uamt", lambda: const_net([0.0, 0.0]), method_params("uamt"), 1000, 2)
    assert m.threshold(0) == pytest.approx((0.75 + 0.25 * math.exp(-5)) * math.log(2))
    assert m.threshold(500) == pytest.approx((0.75 + 0.25 * math.exp(-5 * 0.25)) * math.log(2))
    assert m.threshold(1000) == pytest.approx(math.log(2))


@pytest.mark.parametrize("teacher_bias, certain", [([2.0, 0.0], True), ([0.0, 0.0], False)])
def test_uamt_masks_uncertain_voxels(teacher_bias, certain):
    m = build_method("uamt", lambda: const_net([0.5, -0.5]), method_params("uamt", {"consistency": 1.0}), 100, 2)
    with torch.no_grad():
        m.teacher.bias.copy_(torch.tensor(teacher_bias))
    p_t = torch.softmax(torch.tensor(teacher_bias), 0)
    entropy = float(-(p_t * torch.log(p_t + 1e-6)).sum())
    assert (entropy < m.threshold(10)) == certain  # 2-class entropy: 0.378 (certain) or ln 2 (uncertain)
    b = batch()
    _, logs = m.training_step(b, 10)
    p_s = torch.softmax(torch.tensor([0.5, -0.5]), 0)
    # every voxel certain: sum over voxels of sum_c (p_s - p_t)^2 / (2 * voxels) = (p_s0 - p_t0)^2 for 2 classes
    expected = float((p_s[0] - p_t[0]) ** 2) if certain else 0.0
    assert logs["loss_cons"] == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert logs["certain"] == (1.0 if certain else 0.0)


# -------------------------------------------------------------------------------------------------------------- CPS

def test_cps_cross_targets_and_weights():
    nets = iter([const_net([1.0, 0.0, 0.5]), const_net([0.0, 0.2, 1.5])])
    m = build_method("cps", lambda: next(nets), method_params("cps", {"consistency": 0.3}), 100, 3)
    with torch.no_grad():  # CPS re-initialises both networks (Kaiming / Xavier): pin them again for the test
        for net, bias in ((m.student, [1.0, 0.0, 0.5]), (m.second, [0.0, 0.2, 1.5])):
            net.weight.zero_()
            net.bias.copy_(torch.tensor(bias))
    b = batch(n_classes=3)
    loss, logs = m.training_step(b, 40)
    ls1 = torch.log_softmax(torch.tensor([1.0, 0.0, 0.5]), 0)
    ls2 = torch.log_softmax(torch.tensor([0.0, 0.2, 1.5]), 0)
    # net 1 predicts class 0 everywhere, net 2 class 2: each is taught the other's class
    cps1, cps2 = -float(ls1[2]), -float(ls2[0])
    assert logs["loss_cps"] == pytest.approx((cps1 + cps2) / 2, rel=1e-6)
    w = 0.3 * sigmoid_rampup(40, 100)
    sup = (sup_loss(m.student(b["x_l"]), b["y_l"]) + sup_loss(m.second(b["x_l"]), b["y_l"])).item()
    assert loss.item() == pytest.approx(sup + w * (cps1 + cps2), rel=1e-6)


def test_cps_targets_are_detached_and_inits_differ():
    torch.manual_seed(0)
    m = build_method("cps", lambda: torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, padding=1)), method_params("cps"),
                       10, 3)
    assert not torch.equal(m.student[0].weight, m.second[0].weight)
    b = batch(n_classes=3)
    loss, _ = m.training_step(b, 10)
    loss.backward()
    g_total = m.second[0].weight.grad.clone()
    m.second.zero_grad()
    # net 2's gradient must come only from its own terms, with net 1's prediction as a constant target
    x = torch.cat([b["x_l"], b["x_u"]])
    out1, out2 = m.student(x).detach(), m.second(x)
    own = sup_loss(out2[:2], b["y_l"]) + m.p.consistency * sigmoid_rampup(10, 10) * F.cross_entropy(
        out2[2:], out1[2:].argmax(1))
    own.backward()
    assert torch.allclose(g_total, m.second[0].weight.grad, atol=1e-6)
