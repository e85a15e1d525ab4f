"""Strong augmentations in torch, batched, on the training device (UniMatch ``dataset/transform.py`` for medical
images, rewritten for tensors): colour jitter, Gaussian blur, CutMix boxes, and BCP's copy-paste box.

Images are (B, C, *spatial) with intensities in [0, 1] (prepared data are min-max normalised, CT-windowed or
RGB / 255); colour jitter takes one channel (grey) or three (RGB). Every random parameter is drawn on the CPU from torch's global generator (seeded and checkpointed by the
trainer), so runs are reproducible and resumable whatever the device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["colour_jitter", "gaussian_blur", "cutmix_boxes", "paste", "bcp_box_mask", "strong_view"]


def _u(n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n)


def colour_jitter(x: torch.Tensor, strength: float = 0.5, p: float = 0.8, hue: float = 0.25,
                  contrast: float | None = None, saturation: float | None = None) -> torch.Tensor:
    """torchvision ``ColorJitter(s, c, sat, hue)`` applied with probability ``p`` per image (``RandomApply``);
    ``strength`` s is the brightness range and, unless given, the contrast and saturation ranges (0: the factor is
    1, torchvision's absent operation; DEC-Seg jitters brightness and hue only).

    One-channel images: saturation and hue are identities (as in torchvision), so it is brightness (x*b) and
    contrast (blend with the image mean by c), b, c ~ U[1-s, 1+s], in a random order per image, each clamped to
    [0, 1]. RGB images (3 channels): the four operations in a random permutation per image as torchvision
    defines them -- contrast blends with the mean of the grey image (0.2989 R + 0.587 G + 0.114 B), saturation
    with the grey image, hue shifts the HSV hue by h ~ U[-hue, hue] (mod 1)."""
    n, channels = x.shape[0], x.shape[1]
    c_range = strength if contrast is None else contrast
    if channels == 3:
        return _jitter_rgb(x, strength, p, hue, c_range, strength if saturation is None else saturation)
    if channels != 1:
        raise ValueError(f"colour jitter is defined for 1 or 3 channels, got {channels}")
    apply, b, c, order = torch.rand(n) < p, _u(n, 1 - strength, 1 + strength), _u(n, 1 - c_range, 1 + c_range), \
        torch.rand(n) < 0.5
    shape = (n,) + (1,) * (x.ndim - 1)
    b, c = b.to(x).view(shape), c.to(x).view(shape)
    dims = tuple(range(1, x.ndim))

    def bright(t):
        return (t * b).clamp(0, 1)

    def contrast(t):
        return (c * t + (1 - c) * t.mean(dims, keepdim=True)).clamp(0, 1)

    out = torch.where(order.to(x.device).view(shape), contrast(bright(x)), bright(contrast(x)))
    return torch.where(apply.to(x.device).view(shape), out, x)


def _grey(img: torch.Tensor) -> torch.Tensor:
    return (0.2989 * img[0] + 0.587 * img[1] + 0.114 * img[2]).unsqueeze(0)


def _rgb_to_hsv(img: torch.Tensor) -> torch.Tensor:
    r, g, b = img
    maxc, minc = img.max(0).values, img.min(0).values
    eqc = maxc == minc
    cr = maxc - minc
    s = cr / torch.where(eqc, torch.ones_like(maxc), maxc)
    crd = torch.where(eqc, torch.ones_like(cr), cr)
    rc, gc, bc = (maxc - r) / crd, (maxc - g) / crd, (maxc - b) / crd
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return torch.stack((h, s, maxc))


def _hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    h, s, v = hsv
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.to(torch.int64) % 6
    p, q, t = ((v * (1 - s)).clamp(0, 1), (v * (1 - s * f)).clamp(0, 1), (v * (1 - s * (1 - f))).clamp(0, 1))
    table = torch.stack([torch.stack(c) for c in ((v, q, p, p, t, v), (t, v, v, q, p, p), (p, p, t, v, v, q))])
    return table.gather(1, i.unsqueeze(0).unsqueeze(0).expand(3, 1, *i.shape)).squeeze(1)


def _jitter_rgb(x: torch.Tensor, strength: float, p: float, hue: float, contrast: float,
                saturation: float) -> torch.Tensor:
    out = []
    for img in x:
        if float(torch.rand(())) >= p:
            out.append(img)
            continue
        order = torch.randperm(4).tolist()
        b, c, s = (float(_u(1, max(0.0, 1 - r), 1 + r)) for r in (strength, contrast, saturation))
        h = float(_u(1, -hue, hue))
        for op in order:
            if op == 0:
                img = (img * b).clamp(0, 1)
            elif op == 1:
                img = (c * img + (1 - c) * _grey(img).mean()).clamp(0, 1)
            elif op == 2:
                img = (s * img + (1 - s) * _grey(img)).clamp(0, 1)
            else:
                hsv = _rgb_to_hsv(img)
                img = _hsv_to_rgb(torch.stack((torch.remainder(hsv[0] + h, 1.0), hsv[1], hsv[2])))
        out.append(img)
    return torch.stack(out)


def gaussian_blur(x: torch.Tensor, p: float = 0.5, sigma: tuple[float, float] = (0.1, 2.0)) -> torch.Tensor:
    """Gaussian blur with sigma ~ U[sigma] per image, applied with probability ``p`` (UniMatch ``blur``; PIL's
    radius is the standard deviation). Kernels are truncated at 3 sigma of the largest sigma, reflect padding;
    blurring is separable along every spatial axis."""
    n, ch, dims = x.shape[0], x.shape[1], x.ndim - 2
    apply, s = torch.rand(n) < p, _u(n, *sigma)
    if not apply.any():
        return x
    r = int(math.ceil(3 * float(s.max())))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t[None] / s[:, None]) ** 2)
    k = (k / k.sum(1, keepdim=True)).to(x).repeat_interleave(ch, 0)  # (n * ch, 2r+1): each image's channels
    out = x.reshape(1, n * ch, *x.shape[2:])  # one group per image and channel
    conv = (F.conv1d, F.conv2d, F.conv3d)[dims - 1]
    for axis in range(dims):
        shape = [n * ch, 1] + [1] * dims
        shape[2 + axis] = 2 * r + 1
        pad = [0, 0] * dims
        pad[2 * (dims - 1 - axis)] = pad[2 * (dims - 1 - axis) + 1] = r
        out = conv(F.pad(out, pad, mode="reflect"), k.view(shape), groups=n * ch)
    out = out.reshape(x.shape)
    return torch.where(apply.to(x.device).view((n,) + (1,) * (x.ndim - 1)), out, x)


def cutmix_boxes(n: int, size: tuple[int, ...], p: float = 0.5, area: tuple[float, float] = (0.02, 0.4),
                 ratio: tuple[float, float] = (0.3, 1 / 0.3), device=None) -> torch.Tensor:
    """UniMatch ``obtain_cutmix_box`` per image: with probability ``p`` a box of area U[area] x image area and
    aspect ratio U[ratio] at a uniform position that keeps it inside (redrawn until it fits); (n, *size) in {0, 1}.
    2D only (the medical UniMatch is 2D)."""
    if len(size) != 2:
        raise ValueError(f"CutMix boxes are 2D; got a patch of {len(size)} axes")
    h, w = size
    mask = torch.zeros(n, h, w)
    for i in range(n):
        if float(torch.rand(())) > p:
            continue
        s = float(_u(1, *area)) * h * w
        while True:
            r = float(_u(1, *ratio))
            bw, bh = int(math.sqrt(s / r)), int(math.sqrt(s * r))
            x0, y0 = int(torch.randint(0, w, ())), int(torch.randint(0, h, ()))
            if x0 + bw <= w and y0 + bh <= h:
                break
        mask[i, y0:y0 + bh, x0:x0 + bw] = 1
    return mask.to(device) if device is not None else mask


def paste(x: torch.Tensor, source: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """``x`` with ``source`` where ``box`` (B, *spatial) is 1; works for images (B, C, ...) and maps (B, ...)."""
    b = box.bool()
    if x.ndim == box.ndim + 1:
        b = b.unsqueeze(1)
    return torch.where(b, source, x)


def bcp_box_mask(size: tuple[int, ...], device=None, fraction: float = 2 / 3) -> torch.Tensor:
    """BCP ``generate_mask`` (2D and 3D): 1 everywhere except a box of int(fraction * dim) per axis at a uniform
    random position (start in [0, dim - box)), where it is 0. One mask per batch, as in BCP."""
    mask = torch.ones(size)
    sl = []
    for d in size:
        b = int(d * fraction)
        start = int(torch.randint(0, max(d - b, 1), ()))
        sl.append(slice(start, start + b))
    mask[tuple(sl)] = 0
    return mask.to(device) if device is not None else mask


def strong_view(x: torch.Tensor, jitter: float = 0.5, p_jitter: float = 0.8, p_blur: float = 0.5,
                hue: float = 0.25) -> torch.Tensor:
    """UniMatch's strong view without CutMix: colour jitter (p 0.8) then blur (p 0.5)."""
    return gaussian_blur(colour_jitter(x, jitter, p_jitter, hue), p_blur)
