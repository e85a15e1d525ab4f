"""Cross pseudo supervision (Chen et al., CVPR 2021) as in SSL4MIS ``train_cross_pseudo_supervision_2D/3D.py``.

Two networks of the same architecture with different initialisations (Kaiming / Xavier normal); each is trained
with (CE + Dice)/2 on labelled data plus consistency * sigmoid_rampup(t, rampup * T) times the cross entropy
against the other network's hard (argmax, detached) prediction on unlabelled data. Inference uses network 1.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from sslseg.methods import METHODS, Method, Network
from sslseg.methods.common import sigmoid_rampup, sup_loss


@METHODS.register("cps")
class CPS(Method):
    @dataclasses.dataclass(frozen=True)
    class Params:
        consistency: float = 0.1
        rampup: float = 1.0  # fraction of the schedule (SSL4MIS: 200 x 150 of 30000 iterations)

        RANGES = {"consistency": (0, None), "rampup": (0, None)}

    networks = {"student": Network(init="kaiming"), "second": Network(init="xavier")}

    def training_step(self, batch, step):
        x_l, y_l, x_u = batch["x_l"], batch["y_l"], batch["x_u"]
        x = torch.cat([x_l, x_u])
        out1, out2 = self.student(x), self.second(x)
        n = len(x_l)
        sup1, sup2 = sup_loss(out1[:n], y_l), sup_loss(out2[:n], y_l)
        pseudo1, pseudo2 = out1[n:].detach().argmax(1), out2[n:].detach().argmax(1)
        cps1, cps2 = F.cross_entropy(out1[n:], pseudo2), F.cross_entropy(out2[n:], pseudo1)
        w = self.p.consistency * sigmoid_rampup(step, self.p.rampup * self.iterations)
        loss = sup1 + sup2 + w * (cps1 + cps2)
        return loss, {"loss_sup": (sup1 + sup2).item() / 2, "loss_cps": (cps1 + cps2).item() / 2, "w_cons": w}
