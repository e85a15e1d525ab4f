"""FixMatch (Sohn et al., NeurIPS 2020) for segmentation, as the FixMatch baseline of the UniMatch codebase
(``fixmatch.py``) with the medical criteria of UniMatch's ``unimatch.py`` (the source of FixMatch's ACDC numbers in
UniMatch and AIGCMatch).

Per iteration: the student's train-mode prediction on the weak view (detached) gives pseudo-labels and
confidences; the strong view is colour jitter (p 0.8) + blur (p 0.5) + a CutMix box (p 0.5) filled from the strong
view of a second unlabelled batch (``x_u_mix``), whose pseudo-labels come from an eval-mode prediction; pixels
whose confidence is below ``threshold`` are ignored. Loss = [(CE + Dice)/2 on labelled + Dice(strong, pseudo)] / 2.

Not offered: SSL4MIS ``train_fixmatch_standard_augs.py`` (max-normalised confidence > 0.8, low-confidence pixels
turned into background instead of ignored, ramped weight); see docs/methods.md.
"""

from __future__ import annotations

import dataclasses

import torch

from sslseg.augment import cutmix_boxes, paste, strong_view
from sslseg.methods import METHODS, Method
from sslseg.methods.common import dice_loss, sup_loss


@METHODS.register("fixmatch")
class FixMatch(Method):
    @dataclasses.dataclass(frozen=True)
    class Params:
        threshold: float = 0.95
        jitter: float = 0.5  # ColorJitter(0.5, 0.5, 0.5, 0.25); saturation and hue are identities in grey scale
        hue: float = 0.25
        p_jitter: float = 0.8
        p_blur: float = 0.5
        p_cutmix: float = 0.5

        RANGES = {"threshold": (0, 1), "jitter": (0, 1), "hue": (0, 0.5), "p_jitter": (0, 1), "p_blur": (0, 1),
                  "p_cutmix": (0, 1)}

    streams = frozenset({"x_l", "y_l", "x_u", "x_u_mix"})
    spatial_dims = (2,)
    n_strong = 1

    def strong_views(self, x_u: torch.Tensor, x_mix: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``n_strong`` strong views of x_u, each with its own CutMix box filled from a strong view of x_mix."""
        views, boxes = [], []
        for _ in range(self.n_strong):
            s = strong_view(x_u, self.p.jitter, self.p.p_jitter, self.p.p_blur, self.p.hue)
            s_mix = strong_view(x_mix, self.p.jitter, self.p.p_jitter, self.p.p_blur, self.p.hue)
            box = self.place(cutmix_boxes(len(x_u), tuple(x_u.shape[2:]), self.p.p_cutmix, device=x_u.device))
            views.append(paste(s, s_mix, box))
            boxes.append(box)
        return views, boxes

    def place(self, box: torch.Tensor) -> torch.Tensor:
        """Where a CutMix box goes: where it was drawn (AIGCMatch moves it)."""
        return box

    @torch.no_grad()
    def mix_targets(self, x_mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Confidence and pseudo-label of the mix source, predicted in eval mode (UniMatch)."""
        self.student.eval()
        prob = self.student(x_mix).softmax(1)
        self.student.train()
        conf, lab = prob.max(1)
        return conf, lab

    def unsup_loss(self, logits_s: torch.Tensor, pseudo: torch.Tensor, conf: torch.Tensor) -> torch.Tensor:
        return dice_loss(logits_s.softmax(1), pseudo, ignore=conf < self.p.threshold)

    def training_step(self, batch, step):
        x_l, y_l, x_u, x_mix = batch["x_l"], batch["y_l"], batch["x_u"], batch["x_u_mix"]
        conf_mix, lab_mix = self.mix_targets(x_mix)
        (x_s,), (box,) = self.strong_views(x_u, x_mix)
        n = len(x_l)
        logits = self.student(torch.cat([x_l, x_u]))
        logits_s = self.student(x_s)
        conf, pseudo = logits[n:].detach().softmax(1).max(1)
        pseudo, conf = paste(pseudo, lab_mix, box), paste(conf, conf_mix, box)
        loss_x = sup_loss(logits[:n], y_l)
        loss_s = self.unsup_loss(logits_s, pseudo, conf)
        ratio = (conf >= self.p.threshold).float().mean().item()
        return (loss_x + loss_s) / 2, {"loss_sup": loss_x.item(), "loss_s": loss_s.item(), "mask_ratio": ratio}
