"""Edge-guided networks of Hsu & Hua (BCP + edge-guided module + dual teacher), read in ``networks/unet_ega.py``
(2D) and ``networks/VNet_la_ega.py`` (3D) of their code (docs/methods.md). An edge-guided attention block (EGA)
refines decoder features f with the input's edge map:

  E      = |Sobel(x)|, fixed 3-tap kernels ([-1, 0, 1] along one axis, [1, 2, 1] along the others), zero
           padding, on the network input (grey: 0.299 R + 0.587 G + 0.114 B)
  p      = sigmoid(f)                                     (the stage's features f stand in for a prediction)
  L      = p - expand(reduce(G * mean_c p))               (one Laplacian-pyramid level, G a binomial blur)
  F      = drop(ReLU(BN(conv3([f (1 - p), f L, f E']))))  (E' = the edge map at the stage's size)
  out    = drop(CBAM(F sigmoid(BN(conv3(F -> 1))) + f))   (channel gate: shared MLP, reduction 16, on avg + max
                                                           pooling; spatial gate: 7-wide conv on [max, mean])

``egm_unet`` (2D as the reference; 3D the same design): the SSL4MIS UNet whose decoder stages upsample by a 1x1
convolution and nearest x2, an EGA after every decoder stage, E' = E resized (bi/trilinear, align_corners), no
dropout in the EGA. ``egm_vnet`` (3D as the reference): the UA-MT VNet with an EGA after every upsampling + skip
sum (before the stage's convolutions), E' = a learnt 1x1x1 projection of E to 8 x n_filters channels taken to the
stage by nearest resizing and, below that width, a learnt 1x1x1 convolution to the stage's width; Dropout3d(0.4)
on the fused features, element-wise dropout 0.4 after the CBAM and Dropout3d(0.4) on the fourth encoder stage
(their Pancreas network: instance norm, EGA dropout 0.3, ``conv_dropout: [0.4, 0.5]`` after every convolution of
the fourth and fifth encoder stages, no other dropout).

``laplace: aligned`` (default) is a Burt-Adelson pyramid level that aligns with p: the 5-tap binomial
[1, 4, 6, 4, 1] / 16 along every axis, both blurs padded by reflection, the reduced image expanded by inserting
zeros between its samples and blurring with 2^dims x G (a constant p gives L = 0). ``laplace: reference`` runs the
reference's computation: in 2D the same kernel unpadded (the 8-pixel-smaller result is stretched back with nearest
interpolation; its commented-out blur pads by reflection); in 3D the 3x3x3 Gaussian of sigma 1.5 with zero padding
and an "expansion" that places the reduced volume in the first octant of a zero volume (its concatenate-then-
reshape interleaves nothing) with gain 4.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from sslseg.models import MODELS
from sslseg.models.unet import UNet
from sslseg.models.vnet import VNet, _Stage

__all__ = ["EGMUNet", "EGMVNet", "EGA", "CBAM", "sobel_edges", "laplace_level", "blur_kernel"]

GREY = (0.299, 0.587, 0.114)
CONV = {2: F.conv2d, 3: F.conv3d}
NN = {2: (nn.Conv2d, nn.BatchNorm2d, nn.Dropout2d), 3: (nn.Conv3d, nn.BatchNorm3d, nn.Dropout3d)}


def _outer(vectors: list[torch.Tensor]) -> torch.Tensor:
    k = vectors[0]
    for v in vectors[1:]:
        k = k[..., None] * v
    return k


def sobel_edges(x: torch.Tensor) -> torch.Tensor:
    """(B, C, *spatial) -> (B, 1, *spatial): sqrt(sum_a g_a^2) of the (grey) image, g_a the Sobel derivative along
    axis a ([-1, 0, 1] along it, [1, 2, 1] along every other axis), zero padding."""
    dims = x.dim() - 2
    if x.shape[1] == 3:
        x = sum(w * x[:, i:i + 1] for i, w in enumerate(GREY))
    elif x.shape[1] != 1:
        x = x.mean(1, keepdim=True)
    d, s = torch.tensor([-1.0, 0.0, 1.0]), torch.tensor([1.0, 2.0, 1.0])
    k = torch.stack([_outer([d if i == a else s for i in range(dims)]) for a in range(dims)])[:, None].to(x)
    return CONV[dims](x, k, padding=1).pow(2).sum(1, keepdim=True).sqrt()


def blur_kernel(dims: int, mode: str = "aligned") -> torch.Tensor:
    """The pyramid's low-pass kernel: [1, 4, 6, 4, 1] / 16 along every axis; ``reference`` in 3D the 3x3x3
    Gaussian of sigma 1.5, normalised."""
    if mode == "reference" and dims == 3:
        g = torch.exp(-torch.tensor([1.0, 0.0, 1.0]) / (2 * 1.5 ** 2))
        k = _outer([g, g, g])
        return k / k.sum()
    return _outer([torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16] * dims)


def laplace_level(p: torch.Tensor, mode: str = "aligned") -> torch.Tensor:
    """p - expand(reduce(mean_c p)): reduce = blur then keep every other sample per axis; expand = the reduced
    samples at even positions (``reference`` in 3D: in the first octant), zeros elsewhere, blurred with gain x the
    kernel (2^dims; ``reference`` 4). ``aligned``: reflect padding; ``reference``: 2D unpadded, 3D zero padding;
    a result of another size is resized to p's by nearest interpolation."""
    dims = p.dim() - 2
    g = blur_kernel(dims, mode).to(p)[None, None]
    r = g.shape[-1] // 2
    reference = mode == "reference"
    least = (9 if dims == 2 else 1) if reference else r + 1
    if min(p.shape[2:]) < least:
        raise ValueError(f"laplace: {mode} needs decoder stages of at least {least} voxels per axis, got "
                         f"{tuple(p.shape[2:])}; use a larger patch or fewer levels")
    if not reference:
        pad, gain = (lambda t: F.pad(t, (r,) * 2 * dims, mode="reflect")), 2 ** dims
    elif dims == 2:
        pad, gain = (lambda t: t), 4
    else:
        pad, gain = (lambda t: F.pad(t, (r,) * 2 * dims)), 4
    every = (slice(None, None, 2),) * dims
    d = CONV[dims](pad(p.mean(1, keepdim=True)), g)[(..., *every)]
    z = d.new_zeros(d.shape[:2] + tuple(2 * n for n in d.shape[2:]))
    z[(..., *(every if not (reference and dims == 3) else (slice(0, n) for n in d.shape[2:])))] = d
    u = CONV[dims](pad(z), gain * g)
    if u.shape[2:] != p.shape[2:]:
        u = F.interpolate(u, size=p.shape[2:], mode="nearest")
    return p - u


class CBAM(nn.Module):
    """Channel gate (shared MLP on global average and max pooling, summed, sigmoid) then spatial gate (7-wide
    convolution with bias on [channel max, channel mean], sigmoid), as in the reference (no BN in the gate)."""

    def __init__(self, c: int, reduction: int = 16, dims: int = 2) -> None:
        super().__init__()
        h = max(c // reduction, 1)
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(c, h), nn.ReLU(), nn.Linear(h, c))
        self.spatial = NN[dims][0](2, 1, 7, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        scale = self.mlp(flat.mean(2)) + self.mlp(flat.amax(2))
        x = x * torch.sigmoid(scale).view(*scale.shape, *(1,) * (x.dim() - 2))
        s = self.spatial(torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], 1))
        return x * torch.sigmoid(s)


class EGA(nn.Module):
    """Edge-guided attention on features f (B, C, ...) with an edge map (B, 1 or C, ...) of f's size."""

    def __init__(self, c: int, laplace: str = "aligned", reduction: int = 16, dims: int = 2,
                 dropout: float = 0.0) -> None:
        super().__init__()
        conv, bn, drop = NN[dims]
        self.laplace = laplace
        self.fuse = nn.Sequential(conv(3 * c, c, 3, padding=1), bn(c), nn.ReLU())
        self.attention = nn.Sequential(conv(c, 1, 3, padding=1), bn(1), nn.Sigmoid())
        self.cbam = CBAM(c, reduction, dims)
        self.drop_fused = drop(dropout) if dropout else nn.Identity()
        self.drop_out = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, f: torch.Tensor, edge: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(f)
        fused = self.drop_fused(self.fuse(torch.cat([f * (1 - p), f * laplace_level(p, self.laplace), f * edge], 1)))
        return self.drop_out(self.cbam(fused * self.attention(fused) + f))


@MODELS.register("egm_unet")
class EGMUNet(UNet):
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

    # a warm start from the plain UNet of the same widths and upsampling leaves the EGA blocks as initialised
    warm_start_optional = ("ega.",)

    def __init__(self, spatial_dims: int, in_channels: int, n_classes: int, p: Params = Params()) -> None:
        super().__init__(spatial_dims, in_channels, n_classes, p)
        ch = p.channels
        self.ega = nn.ModuleList([EGA(ch[i - 1], p.laplace, p.cbam_reduction, spatial_dims)
                                  for i in range(len(ch) - 1, 0, -1)])
        self.edge_mode = "bilinear" if spatial_dims == 2 else "trilinear"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            edge = sobel_edges(x)
        feats = self.encode(x)
        y = feats[-1]
        for up, dec, ega, skip in zip(self.up, self.dec, self.ega, reversed(feats[:-1])):
            y = dec(torch.cat([skip, up(y)], dim=1))
            e = edge if edge.shape[2:] == y.shape[2:] else \
                F.interpolate(edge, size=y.shape[2:], mode=self.edge_mode, align_corners=True)
            y = ega(y, e)
        return self.head(y)

    decode = features = None  # the decoder needs the input's edge map: no feature-level decoding

    def forward_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self(x), {}


@MODELS.register("egm_vnet")
class EGMVNet(VNet):
    @dataclasses.dataclass(frozen=True)
    class Params(VNet.Params):
        laplace: Literal["aligned", "reference"] = "aligned"
        cbam_reduction: int = 16
        ega_dropout: float = 0.4
        encoder_dropout: float = 0.4  # Dropout3d on the fourth encoder stage (with has_dropout)
        conv_dropout: tuple[float, ...] = ()  # Dropout3d after every convolution of encoder stages 4, 5 (Pancreas)

        def __post_init__(self):
            super().__post_init__()
            rates = (self.ega_dropout, self.encoder_dropout, *self.conv_dropout)
            if self.cbam_reduction < 1 or not all(0 <= r < 1 for r in rates) or len(self.conv_dropout) not in (0, 2):
                raise ValueError("cbam_reduction must be >= 1, the dropout rates in [0, 1), conv_dropout two rates "
                                 "(encoder stages 4 and 5) or none")

    def __init__(self, spatial_dims: int, in_channels: int, n_classes: int, p: Params = Params()) -> None:
        super().__init__(spatial_dims, in_channels, n_classes, p)
        f = p.n_filters
        widths = [8 * f, 4 * f, 2 * f, f]
        if p.has_dropout and p.encoder_dropout:
            self.enc_dropout[3] = nn.Dropout3d(p.encoder_dropout)
        for i, rate in zip((3, 4), p.conv_dropout):  # encoder stages 4 and 5: 3 convolutions of 8f and 16f
            self.enc[i] = _Stage(3, f * 2 ** i, f * 2 ** i, p.normalization, p.residual, rate)
        self.edge_proj = nn.Conv3d(1, 8 * f, 1)
        self.edge_adjust = nn.ModuleList([nn.Identity() if c == 8 * f else nn.Conv3d(8 * f, c, 1) for c in widths])
        self.ega = nn.ModuleList([EGA(c, p.laplace, p.cbam_reduction, 3, p.ega_dropout) for c in widths])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            edge = sobel_edges(x)
        feats = self.encode(x)
        y = feats[-1]
        for up, stage, ega, adjust, skip in zip(self.up, self.dec, self.ega, self.edge_adjust, reversed(feats[:-1])):
            y = up(y) + skip
            # nearest resizing commutes with the 1x1x1 projections: resize E first, project at the stage's size
            e = F.interpolate(edge, size=y.shape[2:], mode="nearest") if edge.shape[2:] != y.shape[2:] else edge
            y = stage(ega(y, adjust(self.edge_proj(e))))
        return self.head(self.dropout(y))

    decode = features = None

    def forward_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self(x), {}
