"""DuoMod-Net as in ``train_duomodnet.py`` of its code (docs/methods.md, "DuoMod-Net"): cross pseudo supervision
between two networks A (Kaiming) and B (Xavier) of the same architecture, with two class-imbalance mechanisms.

DAW, distribution-aware weights. A class distribution pi starts as the labelled set's voxel shares and follows the
softmax mass of the unlabelled predictions, pi <- m pi + (1 - m) q (m = 0.99). From pi:
  p    = clip(pi, q05, q95)                  (the 5th and 95th percentiles of the present foreground shares)
  l    = (log p - log q05) / (log q95 - log q05)
  w_ce = floor + (1 - floor)(1 - l)          (rare classes weigh more; floor 0.2)
  w_ce[background] = median of the foreground w_ce;  w_ce = min(w_ce, 8 median);  w_ce = w_ce / mean(w_ce)
  w_dc = min(sqrt(w_ce), 2)

AFR, adaptive feature regularisation (from 20 % of the run). The disagreement D = JS(p_A, p_B) per voxel; each
network's own argmax y_hat; per class a running minimum and maximum of D over the voxels predicted as that class
(EMA 0.99, set at the first observation); d = (D - min_y) / (max_y - min_y) (0.5 where max <= min); the rank r of
y_hat in pi (0 = most frequent of the C classes) gives
  gamma = 1 + s t(r) d,   t(r) = r / (C - 1)   (``afr_rank: tail``: the rarer the class, the stronger)
and the network's logits become head(gamma x features) (pre-logit features, no gradient through gamma).

Loss: sum over A, B of [w_dc-weighted Dice + w_ce-weighted CE] on the labelled samples, plus
lambda [CE_w(A, argmax B) + CE_w(B, argmax A)] over all samples, lambda = 0.1 sigmoid_rampup(t, 30 % of the run).
Prediction: the mean of A's and B's logits, without AFR.

The reference's epochs (500; AFR from 100, ramp 150) are fractions of the run here. Two of its behaviours are
offered only as options (methods.md): ``afr_rank: reference`` (t(r) = 1 - r / (C - 1): the most frequent class
boosted most) and ``daw_updates: twice`` (pi updated with A's mass and then again with B's, the weights of the two
states averaged); by default pi takes one update per iteration with the mean of both networks' mass.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from sslseg.methods import METHODS, Method, Network
from sslseg.methods.common import sigmoid_rampup

__all__ = ["daw_weights", "js_divergence", "class_ranks", "Disagreement", "weighted_dice_ce", "DuoMod"]

EPS = 1e-8


def daw_weights(pi: torch.Tensor, floor: float = 0.2, cap: float = 8.0, dice_cap: float = 2.0,
                background: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(w_ce, w_dc) of a class distribution ``pi`` (C,), as DAW computes them (module docstring); all ones when
    fewer than two foreground classes are present or their robust range is empty."""
    fg = [c for c in range(len(pi)) if c != background]
    present = pi[fg][pi[fg] > 0]
    ones = torch.ones_like(pi)
    if len(present) < 2:
        return ones, ones
    lo, hi = torch.quantile(present, 0.05), torch.quantile(present, 0.95)
    if hi - lo < EPS:
        return ones, ones
    log_lo, log_hi = torch.log(lo + EPS), torch.log(hi + EPS)
    level = (torch.log(pi.clamp(lo, hi) + EPS) - log_lo) / (log_hi - log_lo + EPS)
    w = floor + (1 - floor) * (1 - level)
    median = torch.median(w[fg])  # the lower middle value for an even count, as torch (the reference)
    w[background] = median
    w = w.clamp(max=median * cap)
    w = w / w.mean()
    return w, w.sqrt().clamp(max=dice_cap)


def js_divergence(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence of the two softmax distributions per voxel, (B, ...): (KL(p_a|m) + KL(p_b|m)) / 2
    with m = (p_a + p_b) / 2 (log(m + 1e-8), 0 log 0 = 0, as the reference's ``F.kl_div``)."""
    pa, pb = logits_a.float().softmax(1), logits_b.float().softmax(1)
    log_m = torch.log((pa + pb) / 2 + EPS)
    return (F.kl_div(log_m, pa, reduction="none").sum(1) + F.kl_div(log_m, pb, reduction="none").sum(1)) / 2


def class_ranks(pi: torch.Tensor) -> torch.Tensor:
    """Rank of each class in ``pi``, 0 = the most frequent (ties in index order)."""
    order = torch.sort(pi, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(len(pi), device=pi.device)
    return ranks


class Disagreement(nn.Module):
    """AFR's per-class running minimum and maximum of the disagreement (buffers: checkpointed with the run)."""

    def __init__(self, n_classes: int, momentum: float = 0.99) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("low", torch.zeros(n_classes))
        self.register_buffer("high", torch.full((n_classes,), float(np.log(2))))
        self.register_buffer("seen", torch.zeros(n_classes, dtype=torch.bool))

    @torch.no_grad()
    def gamma(self, d: torch.Tensor, labels: torch.Tensor, ranks: torch.Tensor, strength: float,
              rank_rule: str) -> torch.Tensor:
        """Update the running range of every predicted class with this batch, then gamma per voxel."""
        n = len(self.low)
        norm = torch.zeros_like(d)
        for c in range(n):
            sel = labels == c
            if not sel.any():
                continue
            lo, hi = d[sel].min(), d[sel].max()
            if self.seen[c]:
                lo = self.momentum * self.low[c] + (1 - self.momentum) * lo
                hi = self.momentum * self.high[c] + (1 - self.momentum) * hi
            self.low[c], self.high[c], self.seen[c] = lo, hi, True
        for c in range(n):
            sel = labels == c
            if sel.any():
                span = self.high[c] - self.low[c]
                norm[sel] = (d[sel] - self.low[c]) / (span + EPS) if span > 0 else 0.5
        t = ranks.float() / (n - 1)
        t = t if rank_rule == "tail" else 1 - t
        return 1 + strength * t[labels] * norm


def weighted_dice_ce(logits: torch.Tensor, target: torch.Tensor, w_dc: torch.Tensor,
                     w_ce: torch.Tensor) -> torch.Tensor:
    """The reference's ``DC_and_CE_loss``: mean over classes of w_dc (1 - Dice) with batch sums (2 I / (S + 1e-6),
    softmax, background included) plus the w_ce-weighted cross entropy (sum of w_y CE / sum of w_y)."""
    probs = logits.float().softmax(1)
    onehot = F.one_hot(target.long(), logits.shape[1]).movedim(-1, 1).float()
    dims = (0, *range(2, logits.dim()))
    dice = 2 * (probs * onehot).sum(dims) / ((probs + onehot).sum(dims) + 1e-6)
    return (w_dc * (1 - dice)).mean() + F.cross_entropy(logits.float(), target.long(), weight=w_ce)


@METHODS.register("duomod")
class DuoMod(Method):
    @dataclasses.dataclass(frozen=True)
    class Params:
        consistency: float = 0.1  # cps_w
        rampup: float = 150 / 500  # fraction of the run (the reference: 150 of 500 epochs)
        afr_start: float = 100 / 500  # AFR from this fraction of the run (epoch 100 of 500)
        strength: float = 1.0  # strength_inter
        afr_momentum: float = 0.99
        daw_momentum: float = 0.99
        weight_floor: float = 0.2
        cap_ratio: float = 8.0
        dice_weight_cap: float = 2.0
        afr_rank: Literal["tail", "reference"] = "tail"
        daw_updates: Literal["once", "twice"] = "once"

        RANGES = {"consistency": (0, None), "rampup": (0, None), "afr_start": (0, 1), "strength": (0, None),
                  "afr_momentum": (0, 1), "daw_momentum": (0, 1), "weight_floor": (0, 1), "cap_ratio": (1, None),
                  "dice_weight_cap": (0, None)}

    networks = {"student": Network(init="kaiming"), "second": Network(init="xavier")}
    predict = ("student", "second")
    spatial_dims = (3,)
    model_requires = ("features",)
    uses_label_counts = True

    def setup(self) -> None:
        device = next(self.student.parameters()).device
        self.afr = nn.ModuleDict({k: Disagreement(self.n_classes, self.p.afr_momentum) for k in ("a", "b")}).to(device)
        self.dist = _Distribution(self.n_classes).to(device)

    def init_label_counts(self, counts: np.ndarray) -> None:
        """pi starts as the labelled set's class shares (uniform if it holds no voxel)."""
        c = torch.as_tensor(np.asarray(counts, np.float64), dtype=torch.float32, device=self.dist.pi.device)
        self.dist.pi.copy_(c / c.sum() if c.sum() > 0 else torch.full_like(c, 1 / len(c)))

    def modules(self):
        return {**self.nets, "afr": self.afr, "dist": self.dist}

    def _weights(self, mass: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kw = dict(floor=self.p.weight_floor, cap=self.p.cap_ratio, dice_cap=self.p.dice_weight_cap)
        return daw_weights(self.dist.update(mass, self.p.daw_momentum), **kw)

    def training_step(self, batch, step):
        x_l, y_l, x_u = batch["x_l"], batch["y_l"], batch["x_u"]
        n, x = len(x_l), torch.cat([x_l, x_u])
        fa, fb = self.student.features(x), self.second.features(x)
        afr = step >= int(round(self.p.afr_start * self.iterations))
        if afr:
            with torch.no_grad():
                la0, lb0 = self.student.head(fa), self.second.head(fb)
                d, ranks = js_divergence(la0, lb0), class_ranks(self.dist.pi)
                ga = self.afr["a"].gamma(d, la0.argmax(1), ranks, self.p.strength, self.p.afr_rank)
                gb = self.afr["b"].gamma(d, lb0.argmax(1), ranks, self.p.strength, self.p.afr_rank)
            fa, fb = fa * ga.unsqueeze(1).to(fa.dtype), fb * gb.unsqueeze(1).to(fb.dtype)
        la, lb = self.student.head(fa), self.second.head(fb)
        with torch.no_grad():
            qa, qb = (_mass(o[n:]) for o in (la, lb))
            if self.p.daw_updates == "once":
                w_ce, w_dc = self._weights((qa + qb) / 2)
            else:  # the reference: two updates, the weights of both states averaged
                (ca, da), (cb, db) = self._weights(qa), self._weights(qb)
                w_ce, w_dc = (ca + cb) / 2, (da + db) / 2
        sup = weighted_dice_ce(la[:n], y_l, w_dc, w_ce) + weighted_dice_ce(lb[:n], y_l, w_dc, w_ce)
        pa, pb = la.detach().argmax(1), lb.detach().argmax(1)
        cps = F.cross_entropy(la.float(), pb, weight=w_ce) + F.cross_entropy(lb.float(), pa, weight=w_ce)
        lam = self.p.consistency * sigmoid_rampup(step, self.p.rampup * self.iterations)
        logs = {"loss_sup": sup.item() / 2, "loss_cps": cps.item() / 2, "w_cons": lam, "afr": float(afr),
                "w_ce_min": w_ce.min().item(), "w_ce_max": w_ce.max().item()}
        return sup + lam * cps, logs


def _mass(logits: torch.Tensor) -> torch.Tensor:
    """Share of the softmax mass of each class over a batch (C,)."""
    s = logits.float().softmax(1).sum((0, *range(2, logits.dim())))
    return s / s.sum() if s.sum() > 0 else torch.zeros_like(s)


class _Distribution(nn.Module):
    """DAW's class distribution pi (a buffer: checkpointed with the run)."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.register_buffer("pi", torch.full((n_classes,), 1 / n_classes))

    @torch.no_grad()
    def update(self, mass: torch.Tensor, momentum: float) -> torch.Tensor:
        self.pi.copy_(momentum * self.pi + (1 - momentum) * mass)
        return self.pi.clone()
