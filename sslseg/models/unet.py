"""UNet for 2D or 3D in the SSL4MIS layout (the network of SSL4MIS, UniMatch, BCP and SSCD on ACDC):
conv-BN-LeakyReLU blocks, dropout per encoder level, and decoder stages that upsample by a 1x1 convolution followed
by bilinear (3D: trilinear) x2 interpolation with ``align_corners=True`` -- what the reference ``UpBlock`` runs,
since its decoders never pass ``bilinear=False``. ``upsample: transpose`` selects a 2x2 transposed convolution
instead (the layout of SSL4MIS's deep-supervision UNet and of this project before the reference decoder),
``upsample: nearest`` a 1x1 convolution and nearest x2 (the edge-guided UNet of sslseg.models.egm_unet).

Optional deep-supervision heads (SSCD): a 3x3 convolution to the classes after every decoder stage but the last,
returned at their native resolution by ``forward_aux`` as ``down2``, ``down4``, ... (the downsampling factor)."""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
import torch.nn as nn

from sslseg.models import MODELS, SegNet

__all__ = ["UNet"]

LAYERS = {
    2: dict(conv=nn.Conv2d, bn=nn.BatchNorm2d, pool=nn.MaxPool2d, up=nn.ConvTranspose2d, drop=nn.Dropout2d,
            interp="bilinear"),
    3: dict(conv=nn.Conv3d, bn=nn.BatchNorm3d, pool=nn.MaxPool3d, up=nn.ConvTranspose3d, drop=nn.Dropout3d,
            interp="trilinear"),
}


def conv_block(d: int, cin: int, cout: int, dropout: float) -> nn.Sequential:
    L = LAYERS[d]
    return nn.Sequential(
        L["conv"](cin, cout, 3, padding=1), L["bn"](cout), nn.LeakyReLU(0.01),
        nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
        L["conv"](cout, cout, 3, padding=1), L["bn"](cout), nn.LeakyReLU(0.01),
    )


def up_layer(d: int, cin: int, cout: int, mode: str) -> nn.Module:
    L = LAYERS[d]
    if mode == "transpose":
        return L["up"](cin, cout, 2, stride=2)
    interp = dict(mode="nearest") if mode == "nearest" else dict(mode=L["interp"], align_corners=True)
    return nn.Sequential(L["conv"](cin, cout, 1), nn.Upsample(scale_factor=2, **interp))


@MODELS.register("unet")
class UNet(SegNet):
    """``encode`` returns the feature of every level (shallow to deep); ``decode`` maps them to logits.

    Methods that perturb features (UniMatch) call the two halves separately; ``forward`` chains them.
    """

    @dataclasses.dataclass(frozen=True)
    class Params:
        channels: tuple[int, ...] = (16, 32, 64, 128, 256)  # feature channels per resolution level
        dropout: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5)  # dropout per encoder level
        deep_supervision: bool = False
        # 1x1 conv + (bi/tri)linear x2 (SSL4MIS), ConvTranspose, or 1x1 conv + nearest x2 (the edge-guided UNet)
        upsample: Literal["bilinear", "transpose", "nearest"] = "bilinear"

        def __post_init__(self):
            if len(self.channels) != len(self.dropout) or len(self.channels) < 2:
                raise ValueError(f"channels {list(self.channels)} and dropout {list(self.dropout)} must have one "
                                 "equal length >= 2")
            if any(c < 1 for c in self.channels) or any(not 0 <= p <= 1 for p in self.dropout):
                raise ValueError("channels must be >= 1 and dropout in [0, 1]")

    # weights a warm start may lack (they keep their initialisation): the deep-supervision heads
    warm_start_optional = ("ds_heads.",)

    def __init__(self, spatial_dims: int, in_channels: int, n_classes: int, p: Params = Params()) -> None:
        super().__init__()
        if spatial_dims not in LAYERS:
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        L, ch = LAYERS[spatial_dims], p.channels
        self.spatial_dims = spatial_dims
        self.enc = nn.ModuleList(
            [conv_block(spatial_dims, in_channels, ch[0], p.dropout[0])]
            + [nn.Sequential(L["pool"](2), conv_block(spatial_dims, ch[i - 1], ch[i], p.dropout[i]))
               for i in range(1, len(ch))])
        self.up = nn.ModuleList([up_layer(spatial_dims, ch[i], ch[i - 1], p.upsample)
                                 for i in range(len(ch) - 1, 0, -1)])
        self.dec = nn.ModuleList([conv_block(spatial_dims, 2 * ch[i - 1], ch[i - 1], 0.0)
                                  for i in range(len(ch) - 1, 0, -1)])
        self.head = L["conv"](ch[0], n_classes, 3, padding=1)
        self.ds_heads = nn.ModuleList([L["conv"](ch[i - 1], n_classes, 3, padding=1)
                                       for i in range(len(ch) - 1, 1, -1)]) if p.deep_supervision else None
        self.divisor = 2 ** (len(ch) - 1)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for block in self.enc:
            x = block(x)
            feats.append(x)
        return feats

    def _decode(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        x, outs = feats[-1], []
        for up, dec, skip in zip(self.up, self.dec, reversed(feats[:-1])):
            x = dec(torch.cat([skip, up(x)], dim=1))
            outs.append(x)
        return outs

    def decode(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.head(self._decode(feats)[-1])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pre-logit features: ``model(x) == model.head(model.features(x))``."""
        return self._decode(self.encode(x))[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def forward_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        outs = self._decode(self.encode(x))
        aux = {}
        if self.ds_heads is not None:
            n = len(outs)
            aux = {f"down{2 ** (n - 1 - k)}": head(o) for k, (head, o) in enumerate(zip(self.ds_heads, outs))}
        return self.head(outs[-1]), aux
