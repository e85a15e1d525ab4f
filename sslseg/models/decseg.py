"""DEC-Seg's network (Zhang et al., Pattern Recognition 2025; ``lib/UNet_res2net.py``, ``lib/net_factory_res2net.py``,
``lib/GAN.py`` of its code, read at 60b41d1; docs/methods.md, "DEC-Seg"), 2D.

* ``Res2Net``: Res2Net-50-v1b-26w-4s (Gao et al., TPAMI 2021): a deep stem (three 3x3 convolutions, c/2, c/2, c),
  four stages of Bottle2neck blocks (3, 4, 6, 3), each splitting its 1x1 expansion into ``scale`` groups of
  ``floor(planes * base_width / 64)`` channels that pass hierarchically through 3x3 convolutions; the first block
  of a stage average-pools its last group and its shortcut average-pools before the 1x1 convolution ("v1b").
  The module and parameter names are those of the published checkpoint, so its ImageNet weights load unchanged.
  Five levels are tapped: the stem's output before max pooling (1/2), then the four stages (1/4 ... 1/32).
* CFA, cross-level feature aggregation, on levels 1-4: z = CBR3(concat[CBR1(x_i), CBR1(up2(x_{i+1}))]) (32 + 32),
  z <- z + z * sigmoid(MLP(GAP(z))) (reduction 4, BN in the MLP), then CBR3; 64 channels at level i's size.
* Two scale-specific decoders (one for the 352 input, one for the 192 one): four steps of a 2x2 transposed
  convolution and a DoubleConv over [skip, upsampled], a 3x3 classifier at 1/2 and bilinear x2.
* DCF, dual-scale complementary fusion, level by level over both decoders' five features: the small scale is
  resized (bilinear) to the large; f1, f2 <- CBR3(f1), CBR3(f2); a1 = f1 + sigmoid(f2) f2, a2 = f2 + sigmoid(f1) f1;
  a1, a2 <- CBR3(a1), CBR3(a2); a gate g = softmax(ReLU(BN(conv1x1[a1, a2]))) over two channels; out = g0 a1 + g1 a2.
  A third decoder over the fused levels gives out3, the prediction.
* ``Generator``: the skip-less encoder-decoder (16 ... 256 channels) that maps logits back to an image, used by the
  method's cross-generative loss (sslseg.methods.decseg).

``forward(x)`` is DEC-Seg's test path: the image at the training size, its nearest-neighbour copy at the small size
(``round(size * small / 32) * 32``: 192 for 352), out3. ``scales(x1, x2)`` returns (out1, out2, out3).
``base`` scales every width (64: the published network, 425 M parameters with its DCF decoder; smaller values
for CPUs, see docs/results/synthpolyp.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from sslseg import SslsegError
from sslseg.models import MODELS, SegNet
from sslseg.models.unet import conv_block

__all__ = ["Res2Net", "DecSegNet", "Generator", "DCF", "small_size", "zoom_nearest", "RES2NET_SHA256_PREFIX"]

# the published checkpoint res2net50_v1b_26w_4s-3cf99910.pth names the first 8 hex digits of its SHA-256
# (torch.hub's convention); its full digest is not published
RES2NET_SHA256_PREFIX = "3cf99910"


def cbr(cin: int, cout: int, k: int, bias: bool = False) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias), nn.BatchNorm2d(cout), nn.ReLU(True))


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(*cbr(cin, cout, 3), *cbr(cout, cout, 3))


def small_size(size: int, factor: float = 0.5) -> int:
    """DEC-Seg's second scale: ``round(size * factor / 32) * 32`` with Python's rounding (352 -> 192, 256 -> 128)."""
    return max(32, round(size * factor / 32) * 32)


def zoom_nearest(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, ..., H, W) to ``size`` by nearest neighbour as ``scipy.ndimage.zoom(order=0)`` (grid_mode False: corner
    pixels map onto corner pixels, output pixel i reads input floor(i (n - 1) / (m - 1) + 0.5))."""
    out = x
    for axis, m in zip((-2, -1), size):
        n = x.shape[axis]
        if n == m:
            continue
        pos = torch.arange(m, dtype=torch.float64) * ((n - 1) / (m - 1) if m > 1 else 0.0)
        idx = torch.floor(pos + 0.5).long().clamp(0, n - 1).to(x.device)
        out = out.index_select(out.ndim + axis, idx)
    return out


class Bottle2neck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 base_width: int = 26, scale: int = 4, stage: bool = False) -> None:
        super().__init__()
        width = int(math.floor(planes * base_width / 64.0))
        self.width, self.scale, self.stage = width, scale, stage
        self.conv1 = nn.Conv2d(inplanes, width * scale, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width * scale)
        self.convs = nn.ModuleList([nn.Conv2d(width, width, 3, stride, 1, bias=False) for _ in range(scale - 1)])
        self.bns = nn.ModuleList([nn.BatchNorm2d(width) for _ in range(scale - 1)])
        self.pool = nn.AvgPool2d(3, stride, 1) if stage else None
        self.conv3 = nn.Conv2d(width * scale, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        groups = torch.split(out, self.width, 1)
        parts, sp = [], None
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            sp = groups[i] if i == 0 or self.stage else sp + groups[i]
            sp = self.relu(bn(conv(sp)))
            parts.append(sp)
        parts.append(self.pool(groups[-1]) if self.stage else groups[-1])
        out = self.bn3(self.conv3(torch.cat(parts, 1)))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Res2Net(nn.Module):
    """Res2Net-v1b without its classifier; ``forward`` returns the five levels (1/2 ... 1/32)."""

    def __init__(self, layers=(3, 4, 6, 3), base: int = 64, base_width: int = 26, scale: int = 4,
                 in_channels: int = 3) -> None:
        super().__init__()
        self.inplanes, self.base_width, self.scale = base, base_width, scale
        half = base // 2
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, half, 3, 2, 1, bias=False), nn.BatchNorm2d(half),
                                   nn.ReLU(inplace=True), nn.Conv2d(half, half, 3, 1, 1, bias=False),
                                   nn.BatchNorm2d(half), nn.ReLU(inplace=True), nn.Conv2d(half, base, 3, 1, 1,
                                                                                          bias=False))
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._stage(base, layers[0], 1)
        self.layer2 = self._stage(base * 2, layers[1], 2)
        self.layer3 = self._stage(base * 4, layers[2], 2)
        self.layer4 = self._stage(base * 8, layers[3], 2)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    @property
    def channels(self) -> tuple[int, ...]:
        b = self.conv1[6].out_channels
        return (b, 4 * b, 8 * b, 16 * b, 32 * b)

    def _stage(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        down = nn.Sequential(nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False),
                             nn.Conv2d(self.inplanes, planes * 4, 1, bias=False), nn.BatchNorm2d(planes * 4))
        kw = dict(base_width=self.base_width, scale=self.scale)
        out = [Bottle2neck(self.inplanes, planes, stride, down, stage=True, **kw)]
        self.inplanes = planes * 4
        out += [Bottle2neck(self.inplanes, planes, **kw) for _ in range(1, blocks)]
        return nn.Sequential(*out)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x1 = self.relu(self.bn1(self.conv1(x)))
        x2 = self.layer1(self.maxpool(x1))
        x3 = self.layer2(x2)
        x4 = self.layer3(x3)
        return [x1, x2, x3, x4, self.layer4(x4)]


class CFA(nn.Module):
    """Cross-level feature aggregation of level i (``low``) with level i + 1 (``high``, half its size)."""

    def __init__(self, c_low: int, c_high: int, c: int) -> None:
        super().__init__()
        self.low, self.high = cbr(c_low, c, 1, bias=True), cbr(c_high, c, 1, bias=True)
        self.fuse, self.out = cbr(2 * c, 2 * c, 3), cbr(2 * c, 2 * c, 3)
        hidden = 2 * c // 4
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(2 * c, hidden, 1), nn.BatchNorm2d(hidden),
                                  nn.ReLU(True), nn.Conv2d(hidden, 2 * c, 1), nn.BatchNorm2d(2 * c), nn.Sigmoid())

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        high = F.interpolate(high, scale_factor=2, mode="bilinear", align_corners=True)
        z = self.fuse(torch.cat([self.low(low), self.high(high)], 1))
        return self.out(z + z * self.gate(z))


class Up(nn.Module):
    """2x2 transposed convolution to ``cout``, then a DoubleConv over [skip, upsampled]."""

    def __init__(self, cin: int, cout: int, skip: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 2, stride=2)
        self.conv = double_conv(skip + cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], 1))


def _head(c: int, n_classes: int) -> nn.Conv2d:
    return nn.Conv2d(c, n_classes, 3, padding=1)


def _logits(head: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(head(x), scale_factor=2, mode="bilinear", align_corners=False)


class ScaleDecoder(nn.Module):
    """A scale-specific decoder over the CFA levels; returns (logits, [deepest, d1, d2, d3, d4])."""

    def __init__(self, ch: tuple[int, ...], cfa: int, n_classes: int) -> None:
        super().__init__()
        self.ups = nn.ModuleList([Up(ch[i + 1], ch[i], cfa) for i in (3, 2, 1, 0)])
        self.head = _head(ch[0], n_classes)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x, levels = feats[4], [feats[4]]
        for up, skip in zip(self.ups, reversed(feats[:4])):
            x = up(x, skip)
            levels.append(x)
        return _logits(self.head, x), levels


class DCF(nn.Module):
    """Dual-scale complementary fusion of one level (``c`` channels) of the two scale decoders."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.in1, self.in2, self.mix1, self.mix2 = (cbr(c, c, 3) for _ in range(4))
        self.gate = nn.Sequential(nn.Conv2d(2 * c, 2, 1, bias=False), nn.BatchNorm2d(2), nn.ReLU(True))

    def forward(self, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        f2 = F.interpolate(f2, size=f1.shape[2:], mode="bilinear", align_corners=True)
        f1, f2 = self.in1(f1), self.in2(f2)
        a1 = self.mix1(f1 + torch.sigmoid(f2) * f2)
        a2 = self.mix2(f2 + torch.sigmoid(f1) * f1)
        g = self.gate(torch.cat([a1, a2], 1)).softmax(1)
        return a1 * g[:, :1] + a2 * g[:, 1:]


class FusionDecoder(nn.Module):
    """DCF at each of the five levels, then a decoder over the fused levels (out3)."""

    def __init__(self, ch: tuple[int, ...], n_classes: int) -> None:
        super().__init__()
        self.fuse = nn.ModuleList([DCF(c) for c in reversed(ch)])
        self.bottom = double_conv(ch[4], ch[4])
        self.ups = nn.ModuleList([Up(ch[i + 1], ch[i], ch[i]) for i in (3, 2, 1, 0)])
        self.head = _head(ch[0], n_classes)

    def forward(self, levels1: list[torch.Tensor], levels2: list[torch.Tensor]) -> torch.Tensor:
        fused = [dcf(a, b) for dcf, a, b in zip(self.fuse, levels1, levels2)]
        x = self.bottom(fused[0])
        for up, skip in zip(self.ups, fused[1:]):
            x = up(x, skip)
        return _logits(self.head, x)


@MODELS.register("decseg")
class DecSegNet(SegNet):
    SPATIAL_DIMS = (2,)

    @dataclasses.dataclass(frozen=True)
    class Params:
        base: int = 64  # Res2Net stem width (64: Res2Net-50-v1b-26w-4s); every width of the network scales with it
        layers: tuple[int, ...] = (3, 4, 6, 3)
        base_width: int = 26
        scale: int = 4
        cfa_channels: int = 32  # per input of a CFA block (its output: twice this)
        small: float = 0.5  # the second scale, before rounding to a multiple of 32
        # ImageNet weights of the encoder (the published res2net50_v1b_26w_4s-3cf99910.pth), read from this local
        # file at the start of training (never fetched), verified by SHA-256: the full digest when given, else
        # the checkpoint name's prefix RES2NET_SHA256_PREFIX
        pretrained: str = ""
        pretrained_sha256: str = ""

        RANGES = {"base": (2, None), "base_width": (1, None), "scale": (2, None), "cfa_channels": (2, None),
                  "small": (0.05, 1.0)}

        def __post_init__(self):
            if len(self.layers) != 4 or min(self.layers) < 1:
                raise ValueError("layers must be four block counts >= 1")
            if self.base % 2:
                raise ValueError("base must be even (the stem's first convolutions have base / 2 channels)")

    def __init__(self, spatial_dims: int, in_channels: int, n_classes: int, p: Params = Params()) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError("DEC-Seg's network is 2D")
        self.p, self.in_channels = p, in_channels
        # DEC-Seg maps other channel counts to the encoder's three with one 3x3 convolution
        self.conv0 = nn.Conv2d(in_channels, 3, 3, padding=1, bias=False) if in_channels != 3 else None
        self.encoder = Res2Net(p.layers, p.base, p.base_width, p.scale)
        ch = self.encoder.channels
        c = p.cfa_channels
        self.cfa = nn.ModuleList([CFA(ch[i], ch[i + 1], c) for i in range(4)])
        skip = 2 * c
        self.dec1, self.dec2 = ScaleDecoder(ch, skip, n_classes), ScaleDecoder(ch, skip, n_classes)
        self.fusion = FusionDecoder(ch, n_classes)
        self.divisor = 32

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        f = self.encoder(x if self.conv0 is None else self.conv0(x))
        return [cfa(f[i], f[i + 1]) for i, cfa in enumerate(self.cfa)] + [f[4]]

    def small_view(self, x: torch.Tensor) -> torch.Tensor:
        """The second scale of an image (or label map, (B, H, W)) by nearest neighbour, as DEC-Seg's loader."""
        return zoom_nearest(x, tuple(small_size(s, self.p.small) for s in x.shape[-2:]))

    def scales(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(out1 at x1's size, out2 at x2's size, out3 = DCF at x1's size); each scale encoded in its own pass."""
        out1, levels1 = self.dec1(self.encode(x1))
        out2, levels2 = self.dec2(self.encode(x2))
        return out1, out2, self.fusion(levels1, levels2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scales(x, self.small_view(x))[2]

    def forward_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out1, out2, out3 = self.scales(x, self.small_view(x))
        return out3, {"scale1": out1, "scale2": out2}

    def init_pretrained(self) -> None:
        """Load the encoder's ImageNet weights from ``pretrained`` (training only; inference reads model.pt)."""
        if not self.p.pretrained:
            return
        path = Path(self.p.pretrained)
        if not path.is_file():
            raise SslsegError(f"{path}: Res2Net ImageNet weights not found (model parameter 'pretrained')")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        want = self.p.pretrained_sha256.lower()
        if (want and digest != want) or (not want and not digest.startswith(RES2NET_SHA256_PREFIX)):
            raise SslsegError(f"{path}: sha256 {digest} is not {want or RES2NET_SHA256_PREFIX + '...'} (the published "
                              "res2net50_v1b_26w_4s-3cf99910.pth); give pretrained_sha256 to use another file")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file is one line
            raise SslsegError(f"{path}: not a readable torch state dict ({type(e).__name__})") from None
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        try:
            self.encoder.load_state_dict(state)
        except RuntimeError as e:
            raise SslsegError(f"{path}: does not fit the encoder (base {self.p.base}, layers {list(self.p.layers)}): "
                              f"{str(e).splitlines()[0]}") from None


class Generator(nn.Module):
    """DEC-Seg's generator: logits (``cin`` channels) -> an image (``cout``), an encoder-decoder without skip
    connections (conv blocks with dropout, max pooling, 2x2 transposed convolutions), no output activation."""

    def __init__(self, cin: int, cout: int, channels=(16, 32, 64, 128, 256),
                 dropout=(0.05, 0.1, 0.2, 0.3, 0.5)) -> None:
        super().__init__()
        ch = list(channels)
        self.down = nn.ModuleList([conv_block(2, cin, ch[0], dropout[0])] + [
            nn.Sequential(nn.MaxPool2d(2), conv_block(2, ch[i - 1], ch[i], dropout[i])) for i in range(1, len(ch))])
        self.up = nn.ModuleList([nn.ModuleDict({"up": nn.ConvTranspose2d(ch[i], ch[i - 1], 2, stride=2),
                                                "conv": conv_block(2, ch[i - 1], ch[i - 1], 0.0)})
                                 for i in range(len(ch) - 1, 0, -1)])
        self.out = nn.Conv2d(ch[0], cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.down:
            x = block(x)
        for block in self.up:
            x = block["conv"](block["up"](x))
        return self.out(x)
