"""Inference: 2D slice-wise for 2D benchmarks, 3D sliding window with overlap and gaussian/constant weighting.

2D slices are brought to the training size by the protocol's ``resize_2d`` rule: ``nearest`` zooms each slice with
order 0 (scipy), takes the argmax and zooms the label map back with order 0, exactly as SSL4MIS
``test_2D_fully.py`` / BCP ``test_ACDC.py``; ``bilinear`` resizes the image bilinearly and the class probabilities
back bilinearly before the argmax. Images are (channels, *spatial) throughout.
Training-time validation calls the same ``predict_volume``.
"""

from __future__ import annotations

import itertools
import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from sslseg import SslsegError
from sslseg.data import load_prepared
from sslseg.io import read_case, replace_folder, write_nifti
from sslseg.protocols import PROTOCOLS, Protocol

__all__ = ["predict_volume", "sliding_window", "largest_components", "gaussian_map", "load_checkpoint",
           "build_predictor", "load_model", "infer"]


def gaussian_map(patch, sigma_scale: float = 1 / 8) -> torch.Tensor:
    """nnU-Net's importance map: a centred delta smoothed with sigma = patch * 1/8, max 1, no zeros."""
    tmp = np.zeros(patch, np.float32)
    tmp[tuple(p // 2 for p in patch)] = 1
    g = ndimage.gaussian_filter(tmp, [p * sigma_scale for p in patch], mode="constant", cval=0)
    g /= g.max()
    g[g == 0] = g[g != 0].min()
    return torch.from_numpy(g)


def _starts(size: int, patch: int, overlap: float, stride: int | None = None) -> list[int]:
    if size <= patch:
        return [0]
    if stride is not None:  # UA-MT: every stride voxels, the last window ending at the edge
        return [min(stride * k, size - patch) for k in range(int(np.ceil((size - patch) / stride)) + 1)]
    n = int(np.ceil((size - patch) / (patch * (1 - overlap)))) + 1
    return [int(round(v)) for v in np.linspace(0, size - patch, n)]


def _device_of(model: torch.nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def sliding_window(model: torch.nn.Module, image: torch.Tensor, patch, n_classes: int, overlap: float = 0.5,
                   mode: str = "gaussian", batch_size: int = 4, stride=None) -> torch.Tensor:
    """Class probabilities (C, *spatial) of ``image`` (channels, *spatial) from overlapping windows of ``patch``.

    Windows are placed as in nnU-Net (ceil((size - patch) / (patch * (1 - overlap))) + 1 per axis, evenly spread),
    or, given a ``stride`` per axis, as UA-MT (at k * stride, the last one moved back to end at the edge);
    images smaller than the patch are zero-padded and cropped back. Softmax outputs are accumulated with the
    importance map (``gaussian``) or uniformly (``constant``) and divided by the summed weights, on the model's
    device (on the host when they do not fit there); the result lies where they were accumulated.
    """
    if mode not in ("gaussian", "constant"):
        raise ValueError(f"mode must be 'gaussian' or 'constant', got {mode!r}")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    shape = tuple(image.shape[1:])
    if len(shape) != len(patch):
        raise ValueError(f"image has {len(shape)} spatial axes, patch {len(patch)}")
    pad = [max(p - s, 0) for s, p in zip(shape, patch)]
    x = F.pad(image, [v for p in reversed(pad) for v in (p // 2, p - p // 2)]) if any(pad) else image
    stride = stride or (None,) * len(patch)
    windows = list(itertools.product(*[_starts(s, p, overlap, st) for s, p, st in zip(x.shape[1:], patch, stride)]))
    dev = _device_of(model)
    crop = (slice(None),) + tuple(slice(p // 2, p // 2 + s) for s, p in zip(shape, pad))
    try:  # on the model's device: no copy of each window's output back to the host
        return _accumulate(model, x, windows, patch, n_classes, mode, batch_size, dev, dev)[crop]
    except torch.cuda.OutOfMemoryError:  # the class probabilities of a large volume do not fit: on the host
        torch.cuda.empty_cache()
        return _accumulate(model, x, windows, patch, n_classes, mode, batch_size, dev, torch.device("cpu"))[crop]


def _accumulate(model, x, windows, patch, n_classes, mode, batch_size, dev, store) -> torch.Tensor:
    """Weighted sum of the windows' softmax outputs over the weight sum, kept on ``store``."""
    x = x.to(store)
    weight = (gaussian_map(patch) if mode == "gaussian" else torch.ones(tuple(patch))).to(store)
    probs = torch.zeros((n_classes,) + tuple(x.shape[1:]), device=store)
    norm = torch.zeros(tuple(x.shape[1:]), device=store)
    for i in range(0, len(windows), batch_size):
        sls = [tuple(slice(a, a + p) for a, p in zip(w, patch)) for w in windows[i:i + batch_size]]
        out = model(torch.stack([x[(slice(None),) + s] for s in sls]).to(dev)).softmax(1).float().to(store)
        for s, o in zip(sls, out):
            probs[(slice(None),) + s] += o * weight
            norm[s] += weight
    return probs / norm


def largest_components(pred: np.ndarray) -> np.ndarray:
    """Each foreground class of a label map reduced to its largest 26-connected component (the first found, in
    raster order, among equally large ones); the rest becomes background."""
    out = np.zeros_like(pred)
    full = np.ones((3,) * pred.ndim, bool)
    for c in np.unique(pred[pred != 0]):
        comps, _ = ndimage.label(pred == c, structure=full)
        sizes = np.bincount(comps.ravel())[1:]
        out[comps == int(np.argmax(sizes)) + 1] = c
    return out


def _slices_nearest(model, sl: np.ndarray, patch, dev) -> np.ndarray:
    """SSL4MIS/BCP: each slice (channels, H, W) zoomed to the patch with order 0, argmax, zoomed back with order 0."""
    h, w = sl.shape[2:]
    x = np.stack([ndimage.zoom(s, (1, patch[0] / h, patch[1] / w), order=0) for s in sl])
    pred = model(torch.from_numpy(x).float().to(dev)).argmax(1).cpu().numpy()
    return np.stack([ndimage.zoom(p, (h / patch[0], w / patch[1]), order=0) for p in pred])


def _slices_bilinear(model, sl: np.ndarray, patch, dev) -> np.ndarray:
    """Image resized bilinearly to the patch, class probabilities bilinearly back, then argmax."""
    h, w = sl.shape[2:]
    x = torch.from_numpy(np.ascontiguousarray(sl)).float().to(dev)
    if (h, w) != tuple(patch):
        x = F.interpolate(x, size=tuple(patch), mode="bilinear", align_corners=False)
    p = model(x).softmax(1)
    if (h, w) != tuple(patch):
        p = F.interpolate(p, size=(h, w), mode="bilinear", align_corners=False)
    return p.argmax(1).cpu().numpy()


RESIZE_2D = {"nearest": _slices_nearest, "bilinear": _slices_bilinear}


@torch.no_grad()
def predict_volume(model: torch.nn.Module, image: np.ndarray, dims: int, patch, n_classes: int,
                   protocol: Protocol | str = "strict", overlap: float = 0.5, mode: str = "gaussian",
                   batch_size: int = 4) -> np.ndarray:
    """Label map (uint8, spatial shape of ``image``) of one case, ``image`` being (channels, *spatial): a 3D volume
    by sliding window (``dims`` 3), or a volume or single image slice by slice with the protocol's 2D resize rule
    (``dims`` 2)."""
    model.eval()
    protocol = PROTOCOLS[protocol] if isinstance(protocol, str) else protocol
    if dims == 3:
        pred = sliding_window(model, torch.from_numpy(image).float(), patch, n_classes, overlap, mode,
                              batch_size, protocol.stride).argmax(0).cpu().numpy().astype(np.uint8)
        return largest_components(pred) if protocol.largest_component else pred
    vol = image[:, None] if image.ndim == 3 else image  # (channels, slices, H, W)
    out = np.zeros(vol.shape[1:], np.uint8)
    dev, resize = _device_of(model), RESIZE_2D[protocol.resize_2d]
    for z0 in range(0, vol.shape[1], batch_size):
        sl = np.moveaxis(vol[:, z0:z0 + batch_size], 0, 1)
        out[z0:z0 + len(sl)] = resize(model, sl, patch, dev)
    return out[0] if image.ndim == 3 else out


def load_checkpoint(path: Path) -> dict:
    """A model.pt written by the trainer (weights only: untrusted files are safe to load), checked for shape."""
    path = Path(path)
    if not path.is_file():
        raise SslsegError(f"{path}: model file is missing")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - whatever torch raises, the file is not a usable checkpoint
        raise SslsegError(f"{path}: not a readable sslseg model ({_load_problem(path, e)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != 2 or not isinstance(ckpt.get("networks"), dict):
        raise SslsegError(f"{path}: not an sslseg model of this version (retrain it)")
    return ckpt


def one_line(e: Exception, limit: int = 300) -> str:
    """An exception's message on one line; torch's multi-line state-dict message without its preamble."""
    text = " ".join(str(e).split())
    return (text.split(":", 1)[1] if text.startswith("Error(s) in loading") else text).strip()[:limit]


def _load_problem(path: Path, e: Exception) -> str:
    """Why ``torch.load`` refused ``path``, in words that do not suggest loading it unsafely."""
    text = str(e)
    if path.stat().st_size == 0:
        return "empty file"
    with open(path, "rb") as f:
        head = f.read(2)
    if not head.startswith(b"PK") and head[:1] != b"\x80":  # neither a torch zip archive nor a pickle
        return "not a PyTorch file"
    if "Weights only load failed" in text or "weights_only" in text:
        return "it holds Python objects besides tensors; sslseg never loads those, as they could run code"
    if (head.startswith(b"PK") and not zipfile.is_zipfile(path)) or "zip archive" in text or "central directory" in text:
        return "truncated or not a PyTorch archive"
    if isinstance(e, pickle.UnpicklingError) or "load key" in text:
        return "not a PyTorch file"
    return (text.strip().splitlines() or [type(e).__name__])[0][:200]


def build_predictor(ckpt: dict, path: Path) -> torch.nn.Module:
    """The predicting network(s) of a checkpoint, rebuilt from the architectures it records."""
    from sslseg.methods import Ensemble
    from sslseg.models import build_model

    info, nets = ckpt["info"], []
    try:
        for name in ckpt["predict"]:
            entry = ckpt["networks"][name]
            net = build_model(entry["model"], info["dims"], info["in_channels"], info["n_classes"])
            net.load_state_dict(entry["state_dict"])
            nets.append(net)
    except (RuntimeError, KeyError, SslsegError) as e:
        raise SslsegError(f"{path}: not a usable sslseg model ({one_line(e)})") from None
    return (nets[0] if len(nets) == 1 else Ensemble(nets)).eval()


def load_model(path: Path) -> tuple[torch.nn.Module, dict]:
    """(predictor, info) of a model.pt."""
    ckpt = load_checkpoint(path)
    return build_predictor(ckpt, Path(path)), ckpt["info"]


def infer(model_path: Path, prepared: Path, out_dir: Path, split: str = "test", protocol: str = "strict",
          overlap: float | None = None, mode: str | None = None, batch_size: int = 4,
          device: str | None = None) -> list[Path]:
    """Predict every case of ``split`` into ``out_dir/{case}.nii.gz`` on the case's original grid and geometry
    (predictions of resampled or cropped cases are resampled back per class and placed into the crop box).
    ``overlap``/``mode`` None take the protocol's 3D window settings.

    Predictions are written into a temporary folder that replaces ``out_dir`` only when all cases succeeded.
    """
    from sslseg.data.prepare import restore_grid
    from sslseg.device import claim_device

    proto = PROTOCOLS[protocol]
    overlap, mode = proto.overlap if overlap is None else overlap, mode or proto.mode
    model, info = load_model(model_path)
    meta, cases = load_prepared(prepared)
    if (info["dims"], info["in_channels"], info["n_classes"]) != (meta.dims, meta.in_channels, meta.n_classes):
        raise SslsegError(f"{model_path}: a {info['dims']}D model of {info['in_channels']} channel(s) and "
                          f"{info['n_classes']} classes cannot predict {meta.name} ({meta.dims}D, {meta.in_channels} "
                          f"channel(s), {meta.n_classes} classes)")
    if info.get("dataset", meta.name) != meta.name:  # models written before the name was recorded: shape check only
        raise SslsegError(f"{model_path}: trained on {info['dataset']!r}; {prepared} holds {meta.name!r}")
    model.to(claim_device(device))
    ids = cases.loc[cases["split"] == split, "case"].tolist()
    if not ids:
        raise SslsegError(f"{Path(prepared) / 'cases.csv'}: split {split!r} has no case")
    out_dir = Path(out_dir)
    if out_dir.is_dir() and (other := [p.name for p in out_dir.iterdir() if not p.name.endswith(".nii.gz")]):
        raise SslsegError(f"{out_dir}: holds other files than predictions ({', '.join(sorted(other)[:3])}); "
                          "the prediction folder is replaced as a whole, so give a new or a prediction folder")

    def fill(tmp: Path) -> None:  # earlier predictions in out_dir stay until every case is written
        for cid in ids:
            case = read_case(Path(prepared) / "cases" / f"{cid}.h5", label=False)
            pred = predict_volume(model, case.image, meta.dims, info["patch"], info["n_classes"], proto,
                                  overlap, mode, batch_size)
            write_nifti(tmp / f"{cid}.nii.gz", *restore_grid(pred, case, meta.restore_order))

    replace_folder(out_dir, fill)
    return [out_dir / f"{c}.nii.gz" for c in ids]
