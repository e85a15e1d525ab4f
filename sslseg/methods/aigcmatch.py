"""AIGCMatch (Cheng, Shao et al., "Mind the Context: Attention-Guided Weak-to-Strong Consistency"): UniMatch
(sslseg.methods.unimatch) with its two perturbations guided by the model's attention. There is no public code; the
authors' README names the two modules only, so this is an interpretation (docs/methods.md, AIGCMatch):

* **AttCutMix.** The CutMix box keeps UniMatch's random presence, area and aspect ratio, but is placed where the
  mix source's spatial attention is largest: A = mean over channels of the squared deepest encoder feature
  (activation-based attention, Zagoruyko & Komodakis 2017), from the eval-mode pass that also gives the mix
  source's pseudo-labels, bilinearly resized to the image; the box goes to the window of maximal mean A (first in
  row-major order on ties). The pasted region thus carries the source's most attended content.
* **AttFeaPerb.** UniMatch's Dropout2d(p) on every encoder feature becomes channel dropout weighted by channel
  attention: per image, w_c = mean over space of f_c^2, drop probability p_c = min(p * w_c / mean_c(w), p_max),
  surviving channels scaled by 1 / (1 - p_c) (inverted dropout, as Dropout2d). Channels the model relies on are
  dropped more often, the mean drop rate stays p (below the cap).

``cutmix: random`` and ``fp: random`` give UniMatch exactly; the four combinations are the paper's ablation rows.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
import torch.nn.functional as F

from sslseg.methods import METHODS
from sslseg.methods.unimatch import UniMatch


def spatial_attention(feat: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, h, w) feature -> (B, H, W) attention: channel mean of f^2, bilinearly resized to ``size``."""
    a = feat.pow(2).mean(1, keepdim=True)
    return F.interpolate(a, size=size, mode="bilinear", align_corners=False)[:, 0]


def place_boxes(box: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
    """Move each image's box (B, H, W in {0, 1}, one axis-aligned box or none) to the window of the same size with
    the largest mean attention ``att`` (B, H, W); the first such window in row-major order wins ties."""
    out = torch.zeros_like(box)
    for i in range(len(box)):
        rows, cols = box[i].any(1).nonzero(), box[i].any(0).nonzero()
        if len(rows) == 0:
            continue
        bh, bw = len(rows), len(cols)
        score = F.avg_pool2d(att[i][None, None], (bh, bw), stride=1)[0, 0]
        y0, x0 = divmod(int(score.flatten().argmax()), score.shape[1])
        out[i, y0:y0 + bh, x0:x0 + bw] = 1
    return out


def attention_dropout(feat: torch.Tensor, p: float, p_max: float, u: torch.Tensor | None = None) -> torch.Tensor:
    """Channel dropout with per-image, per-channel probability min(p * w_c / mean(w), p_max), w_c = mean f_c^2;
    kept channels are scaled by 1 / (1 - p_c). ``u`` (B, C) are the uniform draws (drawn here when None)."""
    w = feat.detach().pow(2).flatten(2).mean(2)  # (B, C)
    p_c = (p * w / w.mean(1, keepdim=True).clamp_min(1e-12)).clamp(max=p_max)
    if u is None:
        u = torch.rand_like(p_c)
    keep = (u >= p_c).to(feat.dtype) / (1 - p_c)
    return feat * keep.view(keep.shape + (1,) * (feat.ndim - 2))


@METHODS.register("aigcmatch")
class AIGCMatch(UniMatch):
    @dataclasses.dataclass(frozen=True)
    class Params(UniMatch.Params):
        cutmix: Literal["attention", "random"] = "attention"  # AttCutMix, or UniMatch's random placement
        fp: Literal["attention", "random"] = "attention"  # AttFeaPerb, or UniMatch's Dropout2d
        p_fp_max: float = 0.9  # cap of an attention-weighted channel's drop probability

        def __post_init__(self):
            if not 0 < self.p_fp_max < 1:
                raise ValueError("p_fp_max must be in (0, 1)")

    @torch.no_grad()
    def mix_targets(self, x_mix):
        self.student.eval()
        feats = self.student.encode(x_mix)
        prob = self.student.decode(feats).softmax(1)
        self.student.train()
        self.att_mix = spatial_attention(feats[-1], tuple(x_mix.shape[2:]))
        return prob.max(1)

    def place(self, box):
        return place_boxes(box, self.att_mix) if self.p.cutmix == "attention" else box

    def perturb(self, feat):
        if self.p.fp == "attention":
            return attention_dropout(feat, self.p.p_fp, self.p.p_fp_max)
        return super().perturb(feat)
