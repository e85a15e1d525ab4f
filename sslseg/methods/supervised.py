"""Supervised baseline: labelled data only, (CE + Dice) / 2."""

from __future__ import annotations

import torch

from sslseg.methods import METHODS, Method
from sslseg.methods.common import sup_loss


@METHODS.register("supervised")
class Supervised(Method):
    streams = frozenset({"x_l", "y_l"})

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        loss = sup_loss(self.student(batch["x_l"]), batch["y_l"])
        return loss, {"loss_sup": loss.item()}
