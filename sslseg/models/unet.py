"""UNet for 2D or 3D (SSL4MIS layout: conv-BN-LeakyReLU blocks, dropout per encoder level, ConvTranspose up)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from sslseg.models import MODELS

__all__ = ["UNet"]

LAYERS = {
    2: dict(conv=nn.Conv2d, bn=nn.BatchNorm2d, pool=nn.MaxPool2d, up=nn.ConvTranspose2d, drop=nn.Dropout2d),
    3: dict(conv=nn.Conv3d, bn=nn.BatchNorm3d, pool=nn.MaxPool3d, up=nn.ConvTranspose3d, drop=nn.Dropout3d),
}


def conv_block(d: int, cin: int, cout: int, dropout: float) -> nn.Sequential:
    L = LAYERS[d]
    return nn.Sequential(
        L["conv"](cin, cout, 3, padding=1), L["bn"](cout), nn.LeakyReLU(0.01),
        nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
        L["conv"](cout, cout, 3, padding=1), L["bn"](cout), nn.LeakyReLU(0.01),
    )


class UNet(nn.Module):
    """``encode`` returns the feature of every level (shallow to deep); ``decode`` maps them to logits.

    Methods that perturb features (UniMatch) call the two halves separately; ``forward`` chains them.
    """

    def __init__(self, spatial_dims: int, in_channels: int, n_classes: int,
                 channels: Sequence[int] = (16, 32, 64, 128, 256),
                 dropout: Sequence[float] = (0.05, 0.1, 0.2, 0.3, 0.5)) -> None:
        super().__init__()
        if spatial_dims not in LAYERS:
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if len(channels) != len(dropout) or len(channels) < 2:
            raise ValueError(f"channels {list(channels)} and dropout {list(dropout)} must have one equal length >= 2")
        L = LAYERS[spatial_dims]
        self.spatial_dims = spatial_dims
        self.enc = nn.ModuleList(
            [conv_block(spatial_dims, in_channels, channels[0], dropout[0])]
            + [nn.Sequential(L["pool"](2), conv_block(spatial_dims, channels[i - 1], channels[i], dropout[i]))
               for i in range(1, len(channels))])
        self.up = nn.ModuleList([L["up"](channels[i], channels[i - 1], 2, stride=2) for i in range(len(channels) - 1, 0, -1)])
        self.dec = nn.ModuleList([conv_block(spatial_dims, 2 * channels[i - 1], channels[i - 1], 0.0)
                                  for i in range(len(channels) - 1, 0, -1)])
        self.head = L["conv"](channels[0], n_classes, 3, padding=1)
        self.divisor = 2 ** (len(channels) - 1)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for block in self.enc:
            x = block(x)
            feats.append(x)
        return feats

    def decode(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        for up, dec, skip in zip(self.up, self.dec, reversed(feats[:-1])):
            x = dec(torch.cat([skip, up(x)], dim=1))
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


MODELS.register("unet")(UNet)
