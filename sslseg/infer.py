"""Inference: 2D slice-wise for 2D benchmarks, 3D sliding window with overlap and gaussian/constant weighting.

Protocols for 2D: ``paper`` zooms each slice to the training size with order 0 (scipy), takes the argmax and zooms
the label map back with order 0, exactly as SSL4MIS ``test_2D_fully.py`` / BCP ``test_ACDC.py``; ``strict``
resizes the image bilinearly and the class probabilities back bilinearly before the argmax.
Training-time validation calls the same ``predict_volume``.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from sslseg import SslsegError
from sslseg.data.loader import load_prepared
from sslseg.io import read_case, write_nifti

__all__ = ["predict_volume", "sliding_window", "gaussian_map", "infer"]


def gaussian_map(patch, sigma_scale: float = 1 / 8) -> torch.Tensor:
    """nnU-Net's importance map: a centred delta smoothed with sigma = patch * 1/8, max 1, no zeros."""
    tmp = np.zeros(patch, np.float32)
    tmp[tuple(p // 2 for p in patch)] = 1
    g = ndimage.gaussian_filter(tmp, [p * sigma_scale for p in patch], mode="constant", cval=0)
    g /= g.max()
    g[g == 0] = g[g != 0].min()
    return torch.from_numpy(g)


def _starts(size: int, patch: int, overlap: float) -> list[int]:
    if size <= patch:
        return [0]
    n = int(np.ceil((size - patch) / (patch * (1 - overlap)))) + 1
    return [int(round(v)) for v in np.linspace(0, size - patch, n)]


def _device_of(model: torch.nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def sliding_window(model: torch.nn.Module, image: torch.Tensor, patch, n_classes: int, overlap: float = 0.5,
                   mode: str = "gaussian", batch_size: int = 4) -> torch.Tensor:
    """Class probabilities (C, *spatial) of ``image`` (*spatial) from overlapping windows of size ``patch``.

    Windows are placed as in nnU-Net (ceil((size - patch) / (patch * (1 - overlap))) + 1 per axis, evenly spread);
    images smaller than the patch are zero-padded and cropped back. Softmax outputs are accumulated with the
    importance map (``gaussian``) or uniformly (``constant``) and divided by the summed weights.
    """
    if mode not in ("gaussian", "constant"):
        raise ValueError(f"mode must be 'gaussian' or 'constant', got {mode!r}")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    shape = tuple(image.shape)
    pad = [max(p - s, 0) for s, p in zip(shape, patch)]
    x = F.pad(image, [v for p in reversed(pad) for v in (p // 2, p - p // 2)]) if any(pad) else image
    weight = gaussian_map(patch) if mode == "gaussian" else torch.ones(tuple(patch))
    probs = torch.zeros((n_classes,) + tuple(x.shape))
    norm = torch.zeros(tuple(x.shape))
    windows = list(itertools.product(*[_starts(s, p, overlap) for s, p in zip(x.shape, patch)]))
    dev = _device_of(model)
    for i in range(0, len(windows), batch_size):
        chunk = windows[i:i + batch_size]
        sls = [tuple(slice(a, a + p) for a, p in zip(w, patch)) for w in chunk]
        out = model(torch.stack([x[s] for s in sls])[:, None].to(dev)).softmax(1).float().cpu()
        for s, o in zip(sls, out):
            probs[(slice(None),) + s] += o * weight
            norm[s] += weight
    probs /= norm
    crop = tuple(slice(p // 2, p // 2 + s) for s, p in zip(shape, pad))
    return probs[(slice(None),) + crop]


@torch.no_grad()
def predict_volume(model: torch.nn.Module, image: np.ndarray, dims: int, patch, n_classes: int,
                   protocol: str = "strict", overlap: float = 0.5, mode: str = "gaussian",
                   batch_size: int = 4) -> np.ndarray:
    """Label map (uint8, same shape as ``image``) for one 3D volume (z, y, x), or a single 2D slice."""
    model.eval()
    if dims == 3:
        return sliding_window(model, torch.from_numpy(image).float(), patch, n_classes, overlap, mode,
                              batch_size).argmax(0).numpy().astype(np.uint8)
    vol = image[None] if image.ndim == 2 else image
    out = np.zeros(vol.shape, np.uint8)
    dev = _device_of(model)
    h, w = vol.shape[1:]
    for z0 in range(0, len(vol), batch_size):
        sl = vol[z0:z0 + batch_size]
        if protocol == "paper":
            x = np.stack([ndimage.zoom(s, (patch[0] / h, patch[1] / w), order=0) for s in sl])
            pred = model(torch.from_numpy(x).float()[:, None].to(dev)).argmax(1).cpu().numpy()
            out[z0:z0 + len(sl)] = np.stack([ndimage.zoom(p, (h / patch[0], w / patch[1]), order=0) for p in pred])
        else:
            x = torch.from_numpy(np.ascontiguousarray(sl)).float()[:, None].to(dev)
            if (h, w) != tuple(patch):
                x = F.interpolate(x, size=tuple(patch), mode="bilinear", align_corners=False)
            p = model(x).softmax(1)
            if (h, w) != tuple(patch):
                p = F.interpolate(p, size=(h, w), mode="bilinear", align_corners=False)
            out[z0:z0 + len(sl)] = p.argmax(1).cpu().numpy()
    return out[0] if image.ndim == 2 else out


def load_model(path: Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild the network saved by the trainer (weights only; untrusted files are safe to load)."""
    from sslseg.models import build_model

    path = Path(path)
    if not path.is_file():
        raise SslsegError(f"{path}: model file is missing")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        info = ckpt["info"]
        model = build_model(info["model"], info["dims"], 1, info["n_classes"])
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, KeyError, EOFError, ValueError) as e:
        raise SslsegError(f"{path}: not a usable sslseg model ({str(e).splitlines()[0]})") from None
    return model.eval(), info


def infer(model_path: Path, prepared: Path, out_dir: Path, split: str = "test", protocol: str = "strict",
          overlap: float = 0.5, mode: str = "gaussian", batch_size: int = 4, device: str | None = None) -> list[Path]:
    """Predict every case of ``split`` into ``out_dir/{case}.nii.gz`` with the case's original geometry.

    Predictions are written into a temporary folder that replaces ``out_dir`` only when all cases succeeded.
    """
    from sslseg.device import claim_device

    model, info = load_model(model_path)
    model.to(claim_device(device))
    meta, cases = load_prepared(prepared)
    ids = cases.loc[cases["split"] == split, "case"].tolist()
    if not ids:
        raise SslsegError(f"{Path(prepared) / 'cases.csv'}: split {split!r} has no case")
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for cid in ids:
        case = read_case(Path(prepared) / "cases" / f"{cid}.h5", labels=False)
        pred = predict_volume(model, case.image, meta["dims"], info["patch"], info["n_classes"], protocol,
                              overlap, mode, batch_size)
        write_nifti(tmp / f"{cid}.nii.gz", pred, case)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return [out_dir / f"{c}.nii.gz" for c in ids]
