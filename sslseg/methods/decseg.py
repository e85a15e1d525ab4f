"""DEC-Seg (Zhang et al., Pattern Recognition 2025) as in ``MyTrain.py`` of its code (docs/methods.md, "DEC-Seg"):
one network (sslseg.models.decseg) seeing every image at two scales, s1 = the training size and s2 = its nearest-
neighbour copy at round(s1 / 2 / 32) * 32, with a decoder per scale (out1, out2) and their fusion (out3), and two
generators G0, G1 that turn out3's logits back into images. x^p is a perturbed copy (colour jitter: brightness 0.2,
hue 0.05, drawn anew per image and per scale; no geometric augmentation, schedule ``augment: none``); p_k =
softmax(out_k); up = bilinear resizing of s2 to s1 (align_corners). With the labelled images l and unlabelled u:

  L_sup = sum_{k=1,3} S(out_k(l), y) + S(out2(l), y at s2)                  S = (CE + Dice) / 2
  L_sc  = MSE(p1(l), up p2(l)) + MSE(p1(u), up p2(u)) + MSE(p1(u^p), up p2(u^p))        scale consistency
  L_spc = sum_{k=1..3} MSE(p_k(u), p_k(u^p))                                   perturbation consistency
  L_cc  = MSE(G0(out3(u)), u^p) + MSE(G1(out3(u^p)), u)                         cross-generative consistency
  L     = L_sup + w (L_spc + L_sc + L_cc),  w = 1 (the code's ramp is commented out)

Nothing is detached (as the code). The generators are trained by the same SGD, as a second parameter group; they
are not part of model.pt. Prediction: out3 (``DecSegNet.forward``).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
import torch.nn.functional as F

from sslseg.augment import colour_jitter
from sslseg.methods import METHODS, Method, Network, make_optimiser
from sslseg.methods.common import sup_loss
from sslseg.models.decseg import Generator

__all__ = ["DecSeg", "jitter", "scale_consistency", "cross_generative"]


def jitter(x: torch.Tensor, brightness: float, hue: float) -> torch.Tensor:
    """DEC-Seg's perturbation: torchvision ``ColorJitter(brightness, hue=hue)`` on every image."""
    return colour_jitter(x, brightness, p=1.0, hue=hue, contrast=0.0, saturation=0.0)


def scale_consistency(p_large: torch.Tensor, p_small: torch.Tensor) -> torch.Tensor:
    """MSE between the large scale's probabilities and the small scale's resized to them (bilinear,
    align_corners=True)."""
    up = F.interpolate(p_small, size=p_large.shape[-2:], mode="bilinear", align_corners=True)
    return F.mse_loss(p_large, up)


def cross_generative(gens: nn.ModuleList, logits_u: torch.Tensor, logits_up: torch.Tensor, x_u: torch.Tensor,
                     x_up: torch.Tensor) -> torch.Tensor:
    """L_cc: G0 maps the clean image's logits to the perturbed image, G1 the perturbed image's logits to the clean
    one."""
    return F.mse_loss(gens[0](logits_u), x_up) + F.mse_loss(gens[1](logits_up), x_u)


@METHODS.register("decseg")
class DecSeg(Method):
    @dataclasses.dataclass(frozen=True)
    class Params:
        weight: float = 1.0  # of L_spc + L_sc + L_cc
        brightness: float = 0.2
        hue: float = 0.05
        generator_channels: tuple[int, ...] = (16, 32, 64, 128, 256)
        generator_dropout: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5)

        RANGES = {"weight": (0, None), "brightness": (0, 1), "hue": (0, 0.5)}

        def __post_init__(self):
            if len(self.generator_channels) != len(self.generator_dropout) or len(self.generator_channels) < 2:
                raise ValueError("generator_channels and generator_dropout must have one equal length >= 2")

    networks = {"student": Network()}  # the benchmark's model, which must be DEC-Seg's network (``decseg``)
    spatial_dims = (2,)
    model_requires = ("scales", "small_view")

    def setup(self) -> None:
        net = self.student
        make = lambda: Generator(self.n_classes, net.in_channels, self.p.generator_channels,  # noqa: E731
                                 self.p.generator_dropout)
        self.gens = nn.ModuleList([make(), make()]).to(next(net.parameters()).device)

    def modules(self):
        return {**self.nets, "generators": self.gens}

    def optimisers(self, sched: dict):
        return [make_optimiser([{"params": list(self.student.parameters())},
                                {"params": list(self.gens.parameters())}], sched)]

    def training_step(self, batch, step):
        x_l, y_l, x_u = batch["x_l"], batch["y_l"], batch["x_u"]
        net, n, p = self.student, len(x_l), self.p
        x = torch.cat([x_l, x_u])
        x_s, y_s = net.small_view(x), net.small_view(y_l)
        x_up, x_sup = jitter(x_u, p.brightness, p.hue), jitter(x_s[n:], p.brightness, p.hue)
        out1, out2, out3 = net.scales(x, x_s)
        out1p, out2p, out3p = net.scales(x_up, x_sup)
        p1, p2, p3 = (o.softmax(1) for o in (out1, out2, out3))
        p1p, p2p, p3p = (o.softmax(1) for o in (out1p, out2p, out3p))
        sup = sup_loss(out1[:n], y_l) + sup_loss(out2[:n], y_s) + sup_loss(out3[:n], y_l)
        sc = (scale_consistency(p1[:n], p2[:n]) + scale_consistency(p1[n:], p2[n:])
              + scale_consistency(p1p, p2p))
        spc = F.mse_loss(p1[n:], p1p) + F.mse_loss(p2[n:], p2p) + F.mse_loss(p3[n:], p3p)
        cc = cross_generative(self.gens, out3[n:], out3p, x_u, x_up)
        loss = sup + p.weight * (spc + sc + cc)
        return loss, {"loss_sup": sup.item(), "loss_sc": sc.item(), "loss_spc": spc.item(), "loss_cc": cc.item()}
