"""Bidirectional copy-paste (Bai et al., CVPR 2023) as in BCP ``ACDC_BCP_train.py`` (2D) and ``LA_BCP_train.py``
(3D).

A box of int(2/3 dim) per axis at a random position (M = 0 inside, one per batch). Labelled halves a, b and
unlabelled halves ua, ub of the batch are mixed both ways:
  X_u = ua outside + a inside, X_l = b outside + ub inside.
The loss of each mixed image is [masked Dice + masked CE]/2 over its two regions, with weight ``u_weight`` (0.5)
on the pseudo-labelled region and 1 on the labelled one (``mix_loss``); masked CE = sum(CE m)/sum(m), masked Dice
over all classes including background with batch sums.

Stages (one run, the trainer's stage mechanism): ``pretrain``, the first ``pretrain`` fraction of the iterations
(10k of 10k + 30k), trains on labelled images mixed with each other (a outside, b inside, both weights 1);
``self-train`` then starts from the best validation checkpoint of pre-training, with an EMA teacher (decay 0.99 on parameters and float buffers, as BCP's
``update_model_ema``) initialised from it. Pseudo-labels: the teacher's argmax (train mode, no grad) reduced to the
largest connected component of each class (full connectivity). Model selection restarts with self-training.

``pretrain_dice_weight``, ``mix_dice_weight``: the losses as w Dice + (1 - w) CE in pre-training and
self-training (BCP: 1/2 each; Hsu & Hua on Pancreas: 0.55 and 0.42).

``pretrain_weight_decay``: the weight decay of pre-training (default: the schedule's, as BCP; Hsu & Hua
pre-train on LA with 1e-3 and self-train with 1e-4).

``reference_masked_dice``: BCP before commit a925e30 (the code of the paper's numbers) left the background
channel of the masked Dice unmasked; False (default) masks every channel, as fixed upstream.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from sslseg import SslsegError
from sslseg.augment import bcp_box_mask
from sslseg.methods import METHODS, Method, Stage
from sslseg.methods.common import dice_loss, ema_update, make_ema
from sslseg.params import added


def largest_cc(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Per image and foreground class, keep only the largest connected component (full connectivity); (B, ...)."""
    out = np.zeros(labels.shape, np.int64)
    arr = labels.cpu().numpy()
    struct = ndimage.generate_binary_structure(arr.ndim - 1, arr.ndim - 1)
    for i in range(arr.shape[0]):
        for c in range(1, n_classes):
            comp, n = ndimage.label(arr[i] == c, struct)
            if n:
                sizes = np.bincount(comp.ravel())[1:]
                out[i][comp == int(np.argmax(sizes)) + 1] = c
    return torch.from_numpy(out).to(labels.device)


def halves(x: torch.Tensor, what: str, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The two halves of a batch that copy-paste methods mix with each other."""
    h = len(x) // 2
    if h == 0 or len(x) % 2:
        raise SslsegError(f"{method} needs an even {what} batch of at least 2, got {len(x)}")
    return x[:h], x[h:]


def region_dice(probs: torch.Tensor, y: torch.Tensor, region: torch.Tensor, masking: str = "all") -> torch.Tensor:
    """BCP ``mask_DiceLoss`` (smoothing 1e-10): the SSL4MIS Dice of ``probs`` against labels ``y`` restricted to
    ``region`` (B, ...; 1 = scored). ``masking`` says how the region enters each class channel:
    ``all`` every channel (BCP as fixed upstream); ``foreground`` the background channel unrestricted (BCP before
    commit a925e30); ``onehot`` the region one-hot encoded like a label map (SSCD's ``DiceLoss(mask=...)``): the
    background channel is scored where the region is 0, channel 1 where it is 1, higher channels nowhere."""
    n = probs.shape[1]
    outside = (region == 0).unsqueeze(1)
    if masking == "onehot":
        ignore = torch.ones(probs.shape, dtype=torch.bool, device=probs.device)
        ignore[:, 0] = ~outside[:, 0]
        if n > 1:
            ignore[:, 1] = outside[:, 0]
    else:
        ignore = outside.repeat_interleave(n, 1)
        if masking == "foreground":
            ignore[:, 0] = False
        elif masking != "all":
            raise ValueError(f"masking must be all, foreground or onehot, got {masking!r}")
    return dice_loss(probs, y, ignore=ignore, smooth=1e-10)


def mix_loss(logits: torch.Tensor, y_out: torch.Tensor, y_in: torch.Tensor, mask: torch.Tensor, w_out: float,
             w_in: float, masking: str = "all") -> tuple[torch.Tensor, torch.Tensor]:
    """(Dice, CE) of a mixed image: ``y_out`` holds outside the box (mask 1) with weight ``w_out``, ``y_in``
    inside (mask 0) with weight ``w_in``; Dice per region as ``region_dice`` with ``masking``, CE averaged over
    each region."""
    probs = logits.softmax(1)
    inside = 1 - mask
    mb, ib = mask.expand(len(logits), *mask.shape), inside.expand(len(logits), *mask.shape)
    dice = w_out * region_dice(probs, y_out, mb, masking) + w_in * region_dice(probs, y_in, ib, masking)
    ce_out = (F.cross_entropy(logits, y_out.long(), reduction="none") * mb).sum() / (mb.sum() + 1e-16)
    ce_in = (F.cross_entropy(logits, y_in.long(), reduction="none") * ib).sum() / (ib.sum() + 1e-16)
    return dice, w_out * ce_out + w_in * ce_in


@METHODS.register("bcp")
class BCP(Method):
    @dataclasses.dataclass(frozen=True)
    class Params:
        pretrain: float = 10000 / 40000  # fraction of the iterations spent on labelled-only pre-training
        u_weight: float = 0.5
        ema_decay: float = 0.99
        box: float = 2 / 3
        lcc: bool = True
        reference_masked_dice: bool = False
        pretrain_weight_decay: float | None = added()  # None: the schedule's (Hsu & Hua on LA: 1e-3)
        pretrain_dice_weight: float = added(0.5)  # loss = w Dice + (1 - w) CE (Hsu & Hua on Pancreas: 0.55)
        mix_dice_weight: float = added(0.5)  # the same in self-training (Hsu & Hua on Pancreas: 0.42)

        RANGES = {"u_weight": (0, None), "ema_decay": (0, 1), "pretrain_weight_decay": (0, None),
                  "pretrain_dice_weight": (0, 1), "mix_dice_weight": (0, 1)}

        def __post_init__(self):
            if not 0 <= self.pretrain < 1 or not 0 < self.box < 1:
                raise ValueError("pretrain must be in [0, 1), box in (0, 1)")

    def stages(self) -> list[Stage]:
        start = int(round(self.p.pretrain * self.iterations))
        return ([Stage("pretrain", 0, weight_decay=self.p.pretrain_weight_decay)] if start else []) + \
            [Stage("self-train", start, restore_best=True)]

    def setup(self) -> None:
        self.teacher = make_ema(self.student)
        self.decay = self.p.ema_decay

    def modules(self):
        return {"student": self.student, "teacher": self.teacher}

    def begin_stage(self, stage: Stage) -> None:
        """Self-training starts: the teacher becomes a copy of the (reloaded) student."""
        if stage.name == "self-train":
            self.teacher.load_state_dict(self.student.state_dict())

    def box_fraction(self, step: int) -> float:
        """The copy-paste box's side, as a fraction of each axis."""
        return self.p.box

    def pseudo_labels(self, ua: torch.Tensor, ub: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher argmax on each unlabelled half: two passes, as BCP (train mode: batch-statistics BN)."""
        self.teacher.train()
        return self.teacher(ua).argmax(1), self.teacher(ub).argmax(1)

    def training_step(self, batch, step):
        x_l, y_l = batch["x_l"], batch["y_l"]
        a, b = halves(x_l, "labelled", "bcp")
        ya, yb = halves(y_l, "labelled", "bcp")
        mask = bcp_box_mask(tuple(x_l.shape[2:]), x_l.device, self.box_fraction(step))
        masking = "foreground" if self.p.reference_masked_dice else "all"
        if self.stage == "pretrain":
            logits = self.student(a * mask + b * (1 - mask))
            dice, ce = mix_loss(logits, ya, yb, mask, 1.0, 1.0, masking)
            w = self.p.pretrain_dice_weight
            return w * dice + (1 - w) * ce, {"loss_dice": dice.item(), "loss_ce": ce.item()}
        ua, ub = halves(batch["x_u"], "unlabelled", "bcp")
        if len(ua) != len(a):
            raise SslsegError("bcp needs batch_unlabelled == batch_labelled")
        with torch.no_grad():
            pa, pb = self.pseudo_labels(ua, ub)
            if self.p.lcc:
                pa, pb = largest_cc(pa, self.n_classes), largest_cc(pb, self.n_classes)
        x_u_mix = ua * mask + a * (1 - mask)
        x_l_mix = b * mask + ub * (1 - mask)
        out_u, out_l = self.student(x_u_mix), self.student(x_l_mix)
        dice_u, ce_u = mix_loss(out_u, pa, ya, mask, self.p.u_weight, 1.0, masking)
        dice_l, ce_l = mix_loss(out_l, yb, pb, mask, 1.0, self.p.u_weight, masking)
        dice, ce = dice_u + dice_l, ce_u + ce_l
        w = self.p.mix_dice_weight
        return w * dice + (1 - w) * ce, {"loss_dice": dice.item(), "loss_ce": ce.item()}

    def after_step(self, step: int) -> None:
        if self.stage == "self-train":
            ema_update(self.teacher, self.student, self.decay, buffers=True)
