"""Mean Teacher (Tarvainen & Valpola 2017) as in SSL4MIS ``train_mean_teacher_2D/3D.py``.

The teacher is an EMA of the student (decay min(1 - 1/(t+1), ema_decay)); it sees the unlabelled batch plus
clamp(N(0, noise_std), +-noise_clip); the consistency loss is the MSE between student and teacher softmaxes on the
unlabelled batch, weighted by consistency * sigmoid_rampup(t, rampup * T) and 0 before ``start * T`` (SSL4MIS:
rampup over the whole 30k schedule, consistency from iteration 1000 of 30000).
"""

from __future__ import annotations

import dataclasses

import torch

from sslseg.methods import METHODS, Method
from sslseg.methods.common import ema_update, make_ema, sigmoid_rampup, sup_loss


@METHODS.register("mean_teacher")
class MeanTeacher(Method):
    @dataclasses.dataclass(frozen=True)
    class Params:
        consistency: float = 0.1
        rampup: float = 1.0  # fraction of the schedule over which the weight ramps up
        start: float = 1000 / 30000  # fraction of the schedule before which the consistency loss is off
        ema_decay: float = 0.99
        noise_std: float = 0.1
        noise_clip: float = 0.2

        RANGES = {"consistency": (0, None), "rampup": (0, None), "start": (0, 1), "ema_decay": (0, 1),
                  "noise_std": (0, None), "noise_clip": (0, None)}

    def setup(self) -> None:
        self.teacher = make_ema(self.student)

    def modules(self):
        return {"student": self.student, "teacher": self.teacher}

    def consistency_weight(self, step: int) -> float:
        if step < self.p.start * self.iterations:
            return 0.0
        return self.p.consistency * sigmoid_rampup(step, self.p.rampup * self.iterations)

    def training_step(self, batch, step):
        x_l, y_l, x_u = batch["x_l"], batch["y_l"], batch["x_u"]
        logits = self.student(torch.cat([x_l, x_u]))
        loss_sup = sup_loss(logits[: len(x_l)], y_l)
        noise = torch.clamp(torch.randn_like(x_u) * self.p.noise_std, -self.p.noise_clip, self.p.noise_clip)
        with torch.no_grad():
            p_teacher = self.teacher(x_u + noise).softmax(1)
        loss_cons = torch.mean((logits[len(x_l):].softmax(1) - p_teacher) ** 2)
        w = self.consistency_weight(step)
        return loss_sup + w * loss_cons, {"loss_sup": loss_sup.item(), "loss_cons": loss_cons.item(), "w_cons": w}

    def after_step(self, step: int) -> None:
        ema_update(self.teacher, self.student, min(1 - 1 / (step + 1), self.p.ema_decay))
