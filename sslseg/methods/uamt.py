"""UA-MT (Yu et al., MICCAI 2019) as in SSL4MIS ``train_uncertainty_aware_mean_teacher_2D/3D.py``.

Mean Teacher whose consistency is restricted to voxels where the teacher is certain: ``passes`` noisy teacher
forward passes give a mean softmax whose entropy U is compared with the threshold
(0.75 + 0.25 * sigmoid_rampup(t, T)) * ln 2; the loss is sum(mask * (p_student - p_teacher)^2) / (2 sum(mask)),
where p_teacher comes from one further noisy teacher pass and mask = U < threshold. Weight: consistency *
sigmoid_rampup(t, rampup * T); EMA decay min(1 - 1/(t+1), ema_decay).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from sslseg.methods import METHODS
from sslseg.methods.common import sigmoid_rampup, sup_loss
from sslseg.methods.mean_teacher import MeanTeacher


@METHODS.register("uamt")
class UAMT(MeanTeacher):
    @dataclasses.dataclass(frozen=True)
    class Params:
        consistency: float = 0.1
        rampup: float = 1.0
        start: float = 0.0
        ema_decay: float = 0.99
        noise_std: float = 0.1
        noise_clip: float = 0.2
        passes: int = 8  # stochastic teacher passes for the uncertainty
        threshold_start: float = 0.75  # threshold = (start + (1 - start) * ramp) * ln 2

        RANGES = {"consistency": (0, None), "rampup": (0, None), "start": (0, 1), "ema_decay": (0, 1),
                  "noise_std": (0, None), "noise_clip": (0, None), "passes": (1, None), "threshold_start": (0, 1)}

    def _noisy(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.clamp(torch.randn_like(x) * self.p.noise_std, -self.p.noise_clip, self.p.noise_clip)

    def threshold(self, step: int) -> float:
        ramp = sigmoid_rampup(step, self.iterations)
        return (self.p.threshold_start + (1 - self.p.threshold_start) * ramp) * math.log(2)

    @torch.no_grad()
    def uncertainty(self, x_u: torch.Tensor) -> torch.Tensor:
        """Entropy of the mean teacher softmax over noisy passes, shape (B, 1, ...)."""
        p = torch.stack([self.teacher(self._noisy(x_u)).softmax(1) for _ in range(self.p.passes)]).mean(0)
        return -(p * torch.log(p + 1e-6)).sum(1, keepdim=True)

    def training_step(self, batch, step):
        x_l, y_l, x_u = batch["x_l"], batch["y_l"], batch["x_u"]
        logits = self.student(torch.cat([x_l, x_u]))
        loss_sup = sup_loss(logits[: len(x_l)], y_l)
        with torch.no_grad():
            p_teacher = self.teacher(self._noisy(x_u)).softmax(1)
        mask = (self.uncertainty(x_u) < self.threshold(step)).float()
        dist = (logits[len(x_l):].softmax(1) - p_teacher) ** 2
        loss_cons = (mask * dist).sum() / (2 * mask.sum() + 1e-16)
        w = self.consistency_weight(step)
        return loss_sup + w * loss_cons, {"loss_sup": loss_sup.item(), "loss_cons": loss_cons.item(), "w_cons": w,
                                          "certain": mask.mean().item()}
