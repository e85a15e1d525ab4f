"""Edge-guided UNet of Hsu & Hua (BCP + edge-guided module + dual teacher), read in ``networks/unet_ega.py`` of
their code (docs/methods.md): the SSL4MIS UNet whose decoder stages upsample by a 1x1 convolution and nearest x2
and are each followed by an edge-guided attention block (EGA):

  E      = |Sobel(x)|, fixed 3x3 kernels, zero padding, on the network input (grey: 0.299 R + 0.587 G + 0.114 B)
  p      = sigmoid(f)                                     (the stage's features f stand in for a prediction)
  L      = p - expand(reduce(G * mean_c p))               (one Laplacian-pyramid level, G the 5x5 binomial / 256)
  F      = ReLU(BN(conv3x3([f (1 - p), f L, f E'])))      (E' = E bilinearly resized to the stage, align_corners)
  out    = CBAM(F sigmoid(BN(conv3x3(F -> 1))) + f)       (channel gate: shared MLP, reduction 16, on avg + max
                                                           pooling; spatial gate: 7x7 conv on [max, mean])

``laplace: aligned`` (default) pads both blurs by reflection, so the pyramid level keeps the stage's size and
aligns with p; ``laplace: reference`` convolves without padding and stretches the 8-pixel-smaller result back with
nearest interpolation, as the reference code runs (its commented-out blur pads by reflection).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from sslseg.models import MODELS
from sslseg.models.unet import UNet

__all__ = ["EGMUNet", "EGA", "CBAM", "sobel_edges", "laplace_level"]

SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
GREY = (0.299, 0.587, 0.114)


def sobel_edges(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 1, H, W) gradient magnitude sqrt(gx^2 + gy^2) of the (grey) image, zero padding."""
    if x.shape[1] == 3:
        x = sum(w * x[:, i:i + 1] for i, w in enumerate(GREY))
    elif x.shape[1] != 1:
        x = x.mean(1, keepdim=True)
    k = torch.stack([SOBEL_X, SOBEL_X.T])[:, None].to(x)
    g = F.conv2d(x, k, padding=1)
    return g.pow(2).sum(1, keepdim=True).sqrt()


def laplace_level(p: torch.Tensor, mode: str = "aligned") -> torch.Tensor:
    """p - expand(reduce(mean_c p)): reduce = 5x5 binomial blur then keep even rows/columns; expand = zeros
    between the samples, blur with 4 x the kernel. ``aligned``: reflect padding (same size); ``reference``: no
    padding, the result resized back to p's size by nearest interpolation."""
    least = 9 if mode == "reference" else 3
    if min(p.shape[2:]) < least:
        raise ValueError(f"laplace: {mode} needs decoder stages of at least {least} pixels, got "
                         f"{tuple(p.shape[2:])}; use a larger patch or fewer levels")
    g = (BINOMIAL[:, None] * BINOMIAL[None]).div(256).to(p)[None, None]
    m = p.mean(1, keepdim=True)
    pad = (lambda t: F.pad(t, (2, 2, 2, 2), mode="reflect")) if mode == "aligned" else (lambda t: t)
    d = F.conv2d(pad(m), g)[:, :, ::2, ::2]
    z = torch.zeros(d.shape[:2] + (2 * d.shape[2], 2 * d.shape[3]), dtype=d.dtype, device=d.device)
    z[:, :, ::2, ::2] = d
    u = F.conv2d(pad(z), 4 * g)
    if u.shape[2:] != p.shape[2:]:
        u = F.interpolate(u, size=p.shape[2:], mode="nearest")
    return p - u


class CBAM(nn.Module):
    """Channel gate (shared MLP on global average and max pooling, summed, sigmoid) then spatial gate (7x7
    convolution with bias on [channel max, channel mean], sigmoid), as in the reference (no BN in the gate)."""

    def __init__(self, c: int, reduction: int = 16) -> None:
        super().__init__()
        h = max(c // reduction, 1)
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(c, h), nn.ReLU(), nn.Linear(h, c))
        self.spatial = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.mlp(F.adaptive_avg_pool2d(x, 1)) + self.mlp(F.adaptive_max_pool2d(x, 1))
        x = x * torch.sigmoid(scale)[:, :, None, None]
        s = self.spatial(torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], 1))
        return x * torch.sigmoid(s)


class EGA(nn.Module):
    def __init__(self, c: int, laplace: str = "aligned", reduction: int = 16) -> None:
        super().__init__()
        self.laplace = laplace
        self.fuse = nn.Sequential(nn.Conv2d(3 * c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU())
        self.attention = nn.Sequential(nn.Conv2d(c, 1, 3, padding=1), nn.BatchNorm2d(1), nn.Sigmoid())
        self.cbam = CBAM(c, reduction)

    def forward(self, f: torch.Tensor, edge: torch.Tensor) -> torch.Tensor:
        if edge.shape[2:] != f.shape[2:]:
            edge = F.interpolate(edge, size=f.shape[2:], mode="bilinear", align_corners=True)
        p = torch.sigmoid(f)
        fused = self.fuse(torch.cat([f * (1 - p), f * laplace_level(p, self.laplace), f * edge], 1))
        return self.cbam(fused * self.attention(fused) + f)


@MODELS.register("egm_unet")
class EGMUNet(UNet):
    SPATIAL_DIMS = (2,)

    @dataclasses.dataclass(frozen=True)
    class Params(UNet.Params):
        upsample: Literal["bilinear", "transpose", "nearest"] = "nearest"
        laplace: Literal["aligned", "reference"] = "aligned"
        cbam_reduction: int = 16

        def __post_init__(self):
            super().__post_init__()
            if self.deep_supervision:
                raise ValueError("deep_supervision is not defined for egm_unet")
            if self.cbam_reduction < 1:
                raise ValueError("cbam_reduction must be >= 1")

    def __init__(self, spatial_dims: int, in_channels: int, n_classes: int, p: Params = Params()) -> None:
        super().__init__(spatial_dims, in_channels, n_classes, p)
        ch = p.channels
        self.ega = nn.ModuleList([EGA(ch[i - 1], p.laplace, p.cbam_reduction) for i in range(len(ch) - 1, 0, -1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            edge = sobel_edges(x)
        feats = self.encode(x)
        y = feats[-1]
        for up, dec, ega, skip in zip(self.up, self.dec, self.ega, reversed(feats[:-1])):
            y = ega(dec(torch.cat([skip, up(y)], dim=1)), edge)
        return self.head(y)

    decode = None  # the decoder needs the input's edge map: no feature-level decoding (UniMatch's FP)

    def forward_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self(x), {}
