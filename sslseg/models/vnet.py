"""VNet as in UA-MT ``code/networks/vnet.py`` (used unchanged by BCP for LA and, with instance normalisation and
no dropout, for Pancreas): five encoder stages of 1, 2, 3, 3, 3 convolutions (3x3x3, each + norm + ReLU) with
16, 32, 64, 128, 256 channels (``n_filters`` x 1..16), strided 2x2x2 convolutions down, transposed 2x2x2
convolutions up, skip connections added (not concatenated), decoder stages of 3, 3, 2, 1 convolutions, a 1x1x1
output convolution; Dropout3d(0.5) on the deepest feature and before the output when ``has_dropout``.
9,448,866 parameters for 1 input channel, 2 classes, 16 filters, batch norm. ``residual`` uses the reference's
(unused by default) residual blocks: the block input is added before the last ReLU.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
import torch.nn as nn

from sslseg.models import MODELS, SegNet

__all__ = ["VNet"]


NORMS = {"batchnorm": nn.BatchNorm3d, "groupnorm": lambda c: nn.GroupNorm(16, c), "instancenorm": nn.InstanceNorm3d}


def _norm(kind: str, c: int) -> list[nn.Module]:
    return [NORMS[kind](c)] if kind != "none" else []


class _Stage(nn.Module):
    def __init__(self, n: int, cin: int, cout: int, norm: str, residual: bool, dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(n):
            layers += [nn.Conv3d(cin if i == 0 else cout, cout, 3, padding=1), *_norm(norm, cout)]
            if i < n - 1 or not residual:
                layers.append(nn.ReLU(inplace=True))
                if dropout:  # Hsu & Hua's Pancreas network: Dropout3d after every convolution of a stage
                    layers.append(nn.Dropout3d(dropout))
        self.conv, self.residual = nn.Sequential(*layers), residual
        self.relu = nn.ReLU(inplace=True) if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x) + x) if self.residual else self.conv(x)


def _resample(cin: int, cout: int, norm: str, up: bool) -> nn.Sequential:
    conv = (nn.ConvTranspose3d if up else nn.Conv3d)(cin, cout, 2, stride=2)
    return nn.Sequential(conv, *_norm(norm, cout), nn.ReLU(inplace=True))


@MODELS.register("vnet")
class VNet(SegNet):
    SPATIAL_DIMS = (3,)

    @dataclasses.dataclass(frozen=True)
    class Params:
        n_filters: int = 16
        normalization: Literal["batchnorm", "groupnorm", "instancenorm", "none"] = "batchnorm"
        has_dropout: bool = True
        residual: bool = False

        def __post_init__(self):
            if self.n_filters < 1 or (self.normalization == "groupnorm" and self.n_filters % 16):
                raise ValueError("n_filters must be >= 1 (a multiple of 16 with groupnorm)")

    def __init__(self, spatial_dims: int, in_channels: int, n_classes: int, p: Params = Params()) -> None:
        super().__init__()
        if spatial_dims != 3:
            raise ValueError(f"VNet is 3D, got spatial_dims={spatial_dims}")
        f, nm, res = p.n_filters, p.normalization, p.residual
        ch = [f, 2 * f, 4 * f, 8 * f, 16 * f]
        self.enc = nn.ModuleList([_Stage(1, in_channels, f, nm, False)]
                                 + [_Stage(n, c, c, nm, res) for n, c in zip((2, 3, 3, 3), ch[1:])])
        self.down = nn.ModuleList([_resample(a, b, nm, False) for a, b in zip(ch[:-1], ch[1:])])
        self.up = nn.ModuleList([_resample(b, a, nm, True) for a, b in zip(ch[-2::-1], ch[:0:-1])])
        self.dec = nn.ModuleList([_Stage(n, c, c, nm, res) for n, c in zip((3, 3, 2, 1), ch[-2::-1])])
        self.dropout = nn.Dropout3d(0.5) if p.has_dropout else nn.Identity()
        self.enc_dropout = nn.ModuleList([nn.Identity()] * 4 + [self.dropout])  # after each encoder stage
        self.head = nn.Conv3d(f, n_classes, 1)
        self.divisor = 16

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.enc_dropout[0](self.enc[0](x))]
        for down, stage, drop in zip(self.down, self.enc[1:], self.enc_dropout[1:]):
            feats.append(drop(stage(down(feats[-1]))))
        return feats

    def _last(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        for up, stage, skip in zip(self.up, self.dec, reversed(feats[:-1])):
            x = stage(up(x) + skip)
        return self.dropout(x)

    def decode(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.head(self._last(feats))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pre-logit features (after the output dropout): ``model(x) == model.head(model.features(x))``."""
        return self._last(self.encode(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))
