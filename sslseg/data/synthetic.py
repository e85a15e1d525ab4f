"""Two embedded synthetic benchmarks, generated deterministically (no network) in the raw NIfTI layout.

* ``synth2d`` -- cardiac-cine-like short stacks: anisotropic slices (5-10 mm gap), RV crescent, myocardial ring and
  LV cavity shrinking towards the apex, dark myocardium against similar tissue, smooth bias field, per-patient
  contrast (gamma) and Rician noise. Trained slice-wise, like ACDC.
* ``synth3d`` -- abdominal-CT-like volumes with seven organs of very different sizes (liver ... adrenal); the
  gallbladder and the adrenal are the tiny "tail" classes. Trained on 3D patches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from sslseg.data import DATASETS, DatasetSpec, read_split
from sslseg.io import Case, write_json, write_nifti

__all__ = ["cardiac_phantom", "abdomen_phantom", "generate"]


def _grid(shape):
    return np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")


def _smooth_field(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
    return f / (f.std() + 1e-8)


def cardiac_phantom(rng: np.random.Generator, size: int = 64) -> Case:
    """One short-axis stack: labels 1 RV, 2 Myo, 3 LV."""
    nz = int(rng.integers(8, 12))
    yy, xx = _grid((size, size))
    cy, cx = size / 2 + rng.uniform(-5, 5, 2)
    r_lv0, thick = rng.uniform(8, 11), rng.uniform(2.5, 4.0)
    ecc, theta = rng.uniform(0.85, 1.15), rng.uniform(0, np.pi)
    rv_angle, rv_scale = rng.uniform(0.6, 1.4) * np.pi, rng.uniform(1.1, 1.5)
    gamma, noise = rng.uniform(0.6, 1.6), rng.uniform(0.03, 0.08)
    tissue = 0.3 + 0.08 * _smooth_field(rng, (nz, size, size), (1, 3, 3))
    img = np.zeros((nz, size, size), np.float32)
    lab = np.zeros((nz, size, size), np.uint8)
    c, s = np.cos(theta), np.sin(theta)
    u, v = (yy - cy) * c + (xx - cx) * s, -(yy - cy) * s + (xx - cx) * c
    r = np.sqrt((u * ecc) ** 2 + (v / ecc) ** 2)
    body = ((yy - size / 2) / (size * 0.47)) ** 2 + ((xx - size / 2) / (size * 0.49)) ** 2 < 1
    for z in range(nz):
        t = z / max(nz - 1, 1)
        r_lv = r_lv0 * (1 - 0.55 * t**1.5)
        lv = r < r_lv
        myo = (r >= r_lv) & (r < r_lv + thick * (1 - 0.2 * t))
        rc = (r_lv + thick) * rv_scale * (1 - 0.5 * t)
        ry, rx = cy + 0.9 * rc * np.sin(rv_angle), cx + 0.9 * rc * np.cos(rv_angle)
        rv = (np.hypot(yy - ry, xx - rx) < rc) & ~(r < r_lv + thick + 1.5) if t < 0.75 else np.zeros_like(lv)
        lab[z][rv], lab[z][myo], lab[z][lv] = 1, 2, 3
        sl = np.where(body, tissue[z], 0.05)
        sl = np.where(lv, 0.85, np.where(rv, 0.75, np.where(myo, 0.28, sl)))
        img[z] = sl
    img = ndimage.gaussian_filter(img, (0, 0.7, 0.7))
    bias = np.exp(0.35 * _smooth_field(rng, (1, size, size), (1, size / 4, size / 4)))
    img = np.clip(img * bias, 0, None) ** gamma
    n1, n2 = rng.normal(0, noise, (2,) + img.shape).astype(np.float32)
    img = np.sqrt((img + n1) ** 2 + n2**2)
    sp_xy = float(rng.uniform(1.3, 1.8))
    return Case((img * 1000).astype(np.float32), lab, (sp_xy, sp_xy, float(rng.choice([5.0, 6.5, 8.0, 10.0]))))


ORGANS = {1: "liver", 2: "spleen", 3: "kidney_r", 4: "kidney_l", 5: "aorta", 6: "gallbladder", 7: "adrenal"}


def abdomen_phantom(rng: np.random.Generator, shape=(40, 64, 64)) -> Case:
    """One CT-like volume (HU) with the seven ORGANS; 6 and 7 are tiny."""
    zz, yy, xx = _grid(shape)
    nz, ny, nx = shape
    j = lambda a: a * rng.uniform(0.85, 1.15)  # noqa: E731  size jitter
    o = lambda: rng.uniform(-2.5, 2.5)  # noqa: E731  position jitter

    def ell(c, r):
        return sum(((g - ci) / ri) ** 2 for g, ci, ri in zip((zz, yy, xx), c, r)) < 1

    body = ((yy - ny / 2) / (ny * 0.42)) ** 2 + ((xx - nx / 2) / (nx * 0.47)) ** 2 < 1
    img = np.where(body, -80.0, -1000.0).astype(np.float32)  # abdominal fat, air outside
    img += np.where(body, 25 * _smooth_field(rng, shape, 3), 0)
    spine = ((yy - ny * 0.75) ** 2 + (xx - nx / 2) ** 2) < 5**2
    img[spine] = 700
    lab = np.zeros(shape, np.uint8)
    liver_c = (nz * 0.45 + o(), ny * 0.45 + o(), nx * 0.3 + o())
    organs = [
        (1, ell(liver_c, (j(nz * 0.35), j(ny * 0.22), j(nx * 0.2))), 100),
        (2, ell((nz * 0.4 + o(), ny * 0.5 + o(), nx * 0.75 + o()), (j(nz * 0.2), j(ny * 0.12), j(nx * 0.09))), 125),
        (3, ell((nz * 0.6 + o(), ny * 0.68 + o(), nx * 0.33 + o()), (j(nz * 0.16), j(5.5), j(4.5))), 180),
        (4, ell((nz * 0.58 + o(), ny * 0.68 + o(), nx * 0.67 + o()), (j(nz * 0.16), j(5.5), j(4.5))), 180),
        (5, ((yy - ny * 0.62 - o() / 2) ** 2 + (xx - nx * 0.52 - o() / 2) ** 2 < j(2.6) ** 2) & body, 250),
        (6, ell((liver_c[0] + 4 + o(), ny * 0.38 + o(), liver_c[2] + 7 + o()), (j(3.0), j(2.4), j(2.2))), 5),
        (7, ell((nz * 0.38 + o(), ny * 0.63 + o(), nx * 0.62 + o()), (j(2.5), j(1.8), j(1.7))), 35),
    ]
    for cls, mask, hu in organs:
        if cls < 5:  # large organs do not overlap; aorta and the tiny organs are drawn on top
            mask &= lab == 0
        lab[mask] = cls
        img[mask] = hu + 10 * rng.standard_normal()
    img = ndimage.gaussian_filter(img, 0.6) + rng.normal(0, 18, shape).astype(np.float32)
    return Case(img.astype(np.float32), lab, (1.5, 1.5, 2.5))


PHANTOMS = {"synth2d": cardiac_phantom, "synth3d": abdomen_phantom}
SEEDS = {"synth2d": 20241, "synth3d": 20242}


def generate(name: str, raw: Path) -> None:
    """Write every case of the frozen splits in the raw layout (imagesTr/labelsTr NIfTI + dataset.json)."""
    ids = [c for split in ("train", "val", "test") for c in read_split(name, split)]
    for cid in ids:
        rng = np.random.default_rng([SEEDS[name], int(cid.rsplit("_", 1)[1])])
        case = PHANTOMS[name](rng)
        write_nifti(raw / "imagesTr" / f"{cid}_0000.nii.gz", case.image, case)
        write_nifti(raw / "labelsTr" / f"{cid}.nii.gz", case.label, case)
    write_json(raw / "dataset.json", {"name": name, "generator": "sslseg.data.synthetic", "cases": ids})


def _download(name: str):
    def download(source: str, raw: Path, sha256: str | None = None) -> dict:
        generate(name, raw)
        return {"kind": "generated"}

    return download


def _preprocess(normalise):
    def preprocess(spec: DatasetSpec, raw: Path, out: Path) -> None:
        from sslseg.data.prepare import prepare_nifti

        prepare_nifti(spec, raw, out, normalise)

    return preprocess


def _register() -> None:
    from sslseg.data.prepare import ct_window, minmax

    DATASETS.register("synth2d")(DatasetSpec(
        name="synth2d", classes={1: "RV", 2: "Myo", 3: "LV"}, tail=(1,), dims=2, modality="MRI (synthetic cine)",
        intensity="per-volume min-max to [0, 1]", budget_unit="labelled patients",
        download=_download("synth2d"), preprocess=_preprocess(minmax), budgets=(1, 2, 4)))
    DATASETS.register("synth3d")(DatasetSpec(
        name="synth3d", classes=ORGANS, tail=(6, 7), dims=3, modality="CT (synthetic)",
        intensity="CT window [-160, 240] HU to [0, 1]", budget_unit="labelled volumes",
        download=_download("synth3d"), preprocess=_preprocess(ct_window(-160, 240)), budgets=(2, 4),
        mirror=False))


_register()
