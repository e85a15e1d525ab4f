"""Pieces shared by methods: losses, ramps, EMA."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["dice_loss", "sup_loss", "sigmoid_rampup", "ema_update", "make_ema"]


def dice_loss(probs: torch.Tensor, target: torch.Tensor, ignore: torch.Tensor | None = None,
              smooth: float = 1e-5) -> torch.Tensor:
    """Soft Dice loss of SSL4MIS ``DiceLoss``: 1 - (2 sum(p t) + s) / (sum p^2 + sum t^2 + s), mean over all classes
    (background included). ``probs`` (B, C, ...) softmax output, ``target`` (B, ...) integer labels; ``ignore``
    (B, ...) bool marks voxels left out, or (B, C, ...) per class."""
    n = probs.shape[1]
    onehot = F.one_hot(target.long(), n).movedim(-1, 1).to(probs.dtype)
    if ignore is not None:
        keep = (~ignore if ignore.ndim == probs.ndim else (~ignore).unsqueeze(1)).to(probs.dtype)
        probs, onehot = probs * keep, onehot * keep
    dims = (0,) + tuple(range(2, probs.ndim))
    inter = (probs * onehot).sum(dims)
    denom = (probs * probs).sum(dims) + (onehot * onehot).sum(dims)
    return (1 - (2 * inter + smooth) / (denom + smooth)).mean()


def sup_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The supervised loss of SSL4MIS/BCP/UniMatch: (CE + Dice) / 2."""
    return 0.5 * (F.cross_entropy(logits, target.long()) + dice_loss(logits.softmax(1), target))


def sigmoid_rampup(t: float, length: float) -> float:
    """exp(-5 (1 - t/length)^2), 1 after ``length`` (Laine & Aila; SSL4MIS ``ramps.sigmoid_rampup``)."""
    if length <= 0:
        return 1.0
    phase = 1.0 - min(max(t, 0.0), length) / length
    return float(math.exp(-5.0 * phase * phase))


def make_ema(model: nn.Module) -> nn.Module:
    import copy

    ema = copy.deepcopy(model)
    for p in ema.parameters():
        p.requires_grad_(False)
    return ema


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float, buffers: bool = False) -> None:
    """ema = decay * ema + (1 - decay) * model on parameters, as SSL4MIS ``update_ema_variables`` (the teacher's
    BatchNorm statistics come from its own forward passes); ``buffers`` also averages the floating-point buffers
    (BCP's ``update_model_ema`` over the whole state dict)."""
    if buffers:
        pairs = [(e, m) for e, m in zip(ema.state_dict().values(), model.state_dict().values())
                 if e.dtype.is_floating_point]
    else:
        pairs = list(zip(ema.parameters(), model.parameters()))
    for pe, pm in pairs:
        pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)
