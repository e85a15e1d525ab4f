"""UniMatch (Yang et al., CVPR 2023) as in its medical ``unimatch.py``: FixMatch (sslseg.methods.fixmatch) with
two strong views (each its own colour jitter, blur and CutMix box) and a feature-perturbation stream: every encoder
feature of the weak batch goes through Dropout2d(0.5) and the shared decoder decodes clean and perturbed features
in one pass. The network is its own teacher (no EMA). Loss =
[(CE + Dice)/2 (labelled) + 0.25 Dice(s1) + 0.25 Dice(s2) + 0.5 Dice(fp)] / 2, ignoring confidence < 0.95.

UniMatch's reference code selects the best epoch on val + test (methods.md section 0); here selection follows the
benchmark's `selection` (validation only) like every method.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from sslseg.methods import METHODS
from sslseg.methods.common import sup_loss
from sslseg.methods.fixmatch import FixMatch
from sslseg.augment import paste


def decode_with_fp(model, x: torch.Tensor, perturb) -> tuple[torch.Tensor, torch.Tensor]:
    """(clean logits, logits from encoder features perturbed by ``perturb``), one decoder pass on both."""
    feats = model.encode(x)
    dropped = [perturb(f) for f in feats]
    out = model.decode([torch.cat([f, d]) for f, d in zip(feats, dropped)])
    return out.chunk(2)


@METHODS.register("unimatch")
class UniMatch(FixMatch):
    @dataclasses.dataclass(frozen=True)
    class Params(FixMatch.Params):
        p_fp: float = 0.5
        w_s: float = 0.25  # each strong view
        w_fp: float = 0.5

        RANGES = {**FixMatch.Params.RANGES, "p_fp": (0, 1), "w_s": (0, None), "w_fp": (0, None)}

    n_strong = 2
    model_requires = ("encode", "decode")

    def perturb(self, feat: torch.Tensor) -> torch.Tensor:
        """The feature perturbation: channel dropout (Dropout2d) with probability ``p_fp``."""
        return F.dropout2d(feat, self.p.p_fp, training=True)

    def training_step(self, batch, step):
        x_l, y_l, x_u, x_mix = batch["x_l"], batch["y_l"], batch["x_u"], batch["x_u_mix"]
        conf_mix, lab_mix = self.mix_targets(x_mix)
        views, boxes = self.strong_views(x_u, x_mix)
        n = len(x_l)
        logits, logits_fp = decode_with_fp(self.student, torch.cat([x_l, x_u]), self.perturb)
        logits_s = self.student(torch.cat(views)).chunk(len(views))
        conf, pseudo = logits[n:].detach().softmax(1).max(1)
        loss_x = sup_loss(logits[:n], y_l)
        loss_s = [self.unsup_loss(ls, paste(pseudo, lab_mix, b), paste(conf, conf_mix, b))
                  for ls, b in zip(logits_s, boxes)]
        loss_fp = self.unsup_loss(logits_fp[n:], pseudo, conf)
        loss = (loss_x + self.p.w_s * sum(loss_s) + self.p.w_fp * loss_fp) / 2
        ratio = (conf >= self.p.threshold).float().mean().item()
        return loss, {"loss_sup": loss_x.item(), "loss_s": sum(loss_s).item() / len(loss_s),
                      "loss_fp": loss_fp.item(), "mask_ratio": ratio}
