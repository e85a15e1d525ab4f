"""Two embedded synthetic benchmarks, generated deterministically (no network) in the raw NIfTI layout.

* ``synth2d`` -- cardiac-cine-like short stacks: anisotropic slices (5-10 mm gap), RV crescent, myocardial ring and
  LV cavity shrinking towards the apex, dark myocardium against similar tissue, smooth bias field, per-patient
  contrast (gamma) and Rician noise. Trained slice-wise, like ACDC.
* ``synth3d`` -- abdominal-CT-like volumes with seven organs of very different sizes (liver ... adrenal); the
  gallbladder and the adrenal are the tiny "tail" classes. Trained on 3D patches.
* ``synthla`` -- LGE-MRI-like volumes shaped like the LA set: one small structure (an irregular atrium cavity with
  two to four pulmonary-vein stubs) whose thin enhanced wall has gaps, beside an unlabelled blood pool of the same
  brightness, in a larger volume with a bias field and Rician noise. Trained on 3D patches.
* ``synthabd`` -- abdominal-CT-like volumes with AMOS's 15 classes, five of them (esophagus, gallbladder, the two
  adrenal glands, duodenum) tiny: the class-imbalanced set of DuoMod-Net's CPU benchmark.
* ``synthpolyp``, ``synthcolon`` -- endoscopy-like RGB frames with one polyp, JPEG in Kvasir-SEG's layout; 40
  frames of 56-80 pixels, and 180 of 112-160 (``synthcolon``: 120 / 20 / 40, budgets 12 and 36 = DEC-Seg's 10 and
  30 %; its CPU benchmark).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from scipy import ndimage

from sslseg.data import DATASETS, DatasetInfo, DatasetSpec, read_split
from sslseg.data.amos import CLASSES as AMOS_CLASSES
from sslseg.data.amos import TAIL as AMOS_TAIL
from sslseg.io import Geometry, write_json, write_nifti

__all__ = ["cardiac_phantom", "abdomen_phantom", "abdomen15_phantom", "atrium_phantom", "polyp_phantom",
           "tumour_phantom", "generate"]

Phantom = tuple[np.ndarray, np.ndarray, Geometry]  # image (channels, *spatial), label, geometry


def _grid(shape):
    return np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")


def _smooth_field(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
    return f / (f.std() + 1e-8)


def cardiac_phantom(rng: np.random.Generator, size: int = 64) -> Phantom:
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
    return (img * 1000).astype(np.float32)[None], lab, Geometry((sp_xy, sp_xy, float(rng.choice([5.0, 6.5, 8.0, 10.0]))))


ORGANS = {1: "liver", 2: "spleen", 3: "kidney_r", 4: "kidney_l", 5: "aorta", 6: "gallbladder", 7: "adrenal"}


def _ellipsoid(grid, c, r) -> np.ndarray:
    """Voxels of the axis-aligned ellipsoid with centre ``c`` and radii ``r`` (array order) on ``grid``."""
    return sum(((g - ci) / ri) ** 2 for g, ci, ri in zip(grid, c, r)) < 1


def abdomen_phantom(rng: np.random.Generator, shape=(40, 64, 64)) -> Phantom:
    """One CT-like volume (HU) with the seven ORGANS; 6 and 7 are tiny."""
    zz, yy, xx = _grid(shape)
    nz, ny, nx = shape
    j = lambda a: a * rng.uniform(0.85, 1.15)  # noqa: E731  size jitter
    o = lambda: rng.uniform(-2.5, 2.5)  # noqa: E731  position jitter

    ell = functools.partial(_ellipsoid, (zz, yy, xx))

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
    return img.astype(np.float32)[None], lab, Geometry((1.5, 1.5, 2.5))



def abdomen15_phantom(rng: np.random.Generator, shape=(40, 64, 64)) -> Phantom:
    """One CT-like volume (HU) at 1.5 x 1.5 x 2 mm with AMOS's 15 classes, its five tail classes (esophagus,
    gallbladder, the adrenal glands, duodenum) drawn tiny: ten organs of
    10^3-10^4 voxels, several of similar attenuation, and the five tail classes at 20-200 voxels."""
    zz, yy, xx = _grid(shape)
    nz, ny, nx = shape
    j = lambda a: a * rng.uniform(0.85, 1.15)  # noqa: E731  size jitter
    o = lambda: rng.uniform(-2.0, 2.0)  # noqa: E731  position jitter

    ell = functools.partial(_ellipsoid, (zz, yy, xx))

    def tube(y, x, r, z0, z1):  # a vessel along z
        return ((yy - y) ** 2 + (xx - x) ** 2 < r ** 2) & (zz >= z0) & (zz <= z1)

    body = ((yy - ny / 2) / (ny * 0.42)) ** 2 + ((xx - nx / 2) / (nx * 0.47)) ** 2 < 1
    img = np.where(body, -90.0, -1000.0).astype(np.float32)  # fat, air outside
    img += np.where(body, 25 * _smooth_field(rng, shape, 3), 0)
    img[((yy - ny * 0.8) ** 2 + (xx - nx / 2) ** 2) < 4.5 ** 2] = 700  # spine
    lab = np.zeros(shape, np.uint8)
    liver = (nz * 0.3 + o(), ny * 0.45 + o(), nx * 0.27 + o())
    kid_r = (nz * 0.5 + o(), ny * 0.68 + o(), nx * 0.3 + o())
    kid_l = (nz * 0.48 + o(), ny * 0.68 + o(), nx * 0.7 + o())
    # duodenum: half a ring (radius 5 in z-x, tube radius 1.6) around the pancreas head, open to the left
    dz, dx, dy = nz * 0.5 + o() / 2, nx * 0.42 + o() / 2, ny * 0.52 + o() / 2
    ring = np.sqrt((np.hypot(zz - dz, xx - dx) - j(5.0)) ** 2 + (yy - dy) ** 2) < j(1.6)
    organs = [  # class, mask, HU; big organs first (no overlap), vessels and the tail classes on top
        (6, ell(liver, (j(nz * 0.28), j(ny * 0.22), j(nx * 0.19))), 100),
        (1, ell((nz * 0.28 + o(), ny * 0.6 + o(), nx * 0.78 + o()), (j(nz * 0.15), j(ny * 0.11), j(nx * 0.08))), 105),
        (7, ell((nz * 0.3 + o(), ny * 0.34 + o(), nx * 0.63 + o()), (j(nz * 0.15), j(ny * 0.12), j(nx * 0.11))), 35),
        (2, ell(kid_r, (j(nz * 0.13), j(5.5), j(4.0))), 170),
        (3, ell(kid_l, (j(nz * 0.13), j(5.5), j(4.0))), 170),
        (10, ell((nz * 0.45 + o(), ny * 0.52 + o(), nx * 0.54 + o()), (j(nz * 0.06), j(3.0), j(nx * 0.16))), 85),
        (14, ell((nz * 0.86 + o(), ny * 0.36 + o(), nx * 0.5 + o()), (j(nz * 0.08), j(ny * 0.1), j(nx * 0.12))), 10),
        (15, ell((nz * 0.93 + o(), ny * 0.52 + o(), nx * 0.5 + o()), (j(nz * 0.05), j(3.5), j(4.5))), 50),
        (8, tube(ny * 0.66 + o() / 2, nx * 0.56 + o() / 2, j(2.6), 0, nz * 0.8), 220),
        (9, tube(ny * 0.64 + o() / 2, nx * 0.44 + o() / 2, j(2.4), 0, nz * 0.75), 150),
        (4, ell((liver[0] + nz * 0.12, ny * 0.4 + o(), liver[2] + nx * 0.14), (j(3.0), j(2.4), j(2.2))), 10),
        (5, tube(ny * 0.58 + o() / 2, nx * 0.53 + o() / 2, j(1.5), 0, nz * 0.28), 45),
        (11, ell((kid_r[0] - nz * 0.17, ny * 0.66, kid_r[2] + 3), (j(2.6), j(2.0), j(1.8))), 35),
        (12, ell((kid_l[0] - nz * 0.17, ny * 0.66, kid_l[2] - 3), (j(2.6), j(2.0), j(1.8))), 35),
        (13, ring & (xx <= dx), 45),
    ]
    for cls, mask, hu in organs:
        mask &= body
        if cls in (6, 1, 7, 2, 3, 10, 14, 15):
            mask &= lab == 0
        lab[mask] = cls
        img[mask] = hu + 10 * rng.standard_normal()
    img = ndimage.gaussian_filter(img, 0.6) + rng.normal(0, 15, shape).astype(np.float32)
    return img.astype(np.float32)[None], lab, Geometry((1.5, 1.5, 2.0))


def atrium_phantom(rng: np.random.Generator, shape=(40, 64, 64)) -> Phantom:
    """One LGE-MRI-like volume, label 1 = atrium cavity with its vein stubs (about 2-4 % of the volume)."""
    zz, yy, xx = _grid(shape)
    nz, ny, nx = shape
    c = np.array([nz * 0.5, ny * 0.45, nx * 0.5]) + rng.uniform(-4, 4, 3)
    radii = np.array([7.0, 9.0, 10.0]) * rng.uniform(0.85, 1.15, 3)
    r = np.sqrt(sum(((g - ci) / ri) ** 2 for g, ci, ri in zip((zz, yy, xx), c, radii)))
    cavity = r + 0.15 * _smooth_field(rng, shape, 4) < 1
    for _ in range(int(rng.integers(2, 5))):  # pulmonary-vein stubs leaving the cavity
        d = rng.normal(size=3)
        d[1] = abs(d[1])  # towards the back
        d /= np.linalg.norm(d)
        start, length, width = c + d * radii * 0.8, rng.uniform(6, 10), rng.uniform(1.4, 2.2)
        rel = np.stack([zz - start[0], yy - start[1], xx - start[2]])
        t = np.clip(np.tensordot(d, rel, 1), 0, length)
        dist = np.sqrt(sum((rel[k] - t * d[k]) ** 2 for k in range(3)))
        cavity |= dist < width
    wall = ndimage.binary_dilation(cavity, iterations=1) & ~cavity
    wall &= _smooth_field(rng, shape, 2) > -0.3  # enhanced wall with gaps
    pool_c = c + np.array([rng.uniform(-3, 3), -ny * 0.22, nx * rng.choice([-0.28, 0.28])])
    pool = sum(((g - ci) / ri) ** 2 for g, ci, ri in zip((zz, yy, xx), pool_c, (9.0, 7.0, 7.0))) < 1
    img = 0.32 + 0.06 * _smooth_field(rng, shape, 3)  # myocardium / tissue
    img = np.where(pool & ~cavity, 0.55, img)  # an unlabelled blood pool of the same brightness
    img = np.where(cavity, 0.55 + 0.04 * rng.standard_normal(), img)
    img = np.where(wall, 0.9, img)
    img = ndimage.gaussian_filter(img.astype(np.float32), 0.6)
    img = img * np.exp(0.3 * _smooth_field(rng, shape, 12))
    n1, n2 = rng.normal(0, 0.09, (2,) + shape).astype(np.float32)
    img = np.sqrt((img + n1) ** 2 + n2**2)
    return (img * 400).astype(np.float32)[None], cavity.astype(np.uint8), Geometry((0.625, 0.625, 0.625))


def polyp_phantom(rng: np.random.Generator, scale: float = 1.0) -> Phantom:
    """An endoscopy-like RGB frame (0..255) with one polyp (label 1): redder and more saturated than the mucosa
    around it but of about the same luminance, so colour, not brightness, tells them apart. ``scale`` multiplies
    every length (frames of 56-80 pixels at 1)."""
    h, w = (int(v * scale) for v in rng.integers(56, 81, 2))
    yy, xx = _grid((h, w))
    mucosa = np.array([0.80, 0.50, 0.45]) * rng.uniform(0.9, 1.1, 3)
    polyp = np.array([0.95, 0.40, 0.36]) * rng.uniform(0.95, 1.05, 3)
    img = mucosa[:, None, None] * (1 + 0.08 * np.stack([_smooth_field(rng, (h, w), 4 * scale) for _ in range(3)]))
    folds = 0.06 * np.sin(2 * np.pi * (yy * np.cos(a := rng.uniform(0, np.pi)) + xx * np.sin(a))
                          / (rng.uniform(9, 16) * scale))
    img = img * (1 + folds)
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    ry, rx, t = rng.uniform(7, 15) * scale, rng.uniform(7, 15) * scale, rng.uniform(0, np.pi)
    u, v = (yy - cy) * np.cos(t) + (xx - cx) * np.sin(t), -(yy - cy) * np.sin(t) + (xx - cx) * np.cos(t)
    r = np.sqrt((u / ry) ** 2 + (v / rx) ** 2)
    lab = (r < 1).astype(np.uint8)
    blend = np.clip((1.15 - r) / 0.3, 0, 1)  # soft edge
    img = img * (1 - blend) + polyp[:, None, None] * (1 + 0.1 * (1 - r.clip(0, 1))) * blend
    glint = np.exp(-((yy - cy + ry / 3) ** 2 + (xx - cx) ** 2) / (4.0 * scale ** 2)) * rng.uniform(0.3, 0.8)
    vignette = 1 - 0.35 * (((yy - h / 2) / h) ** 2 + ((xx - w / 2) / w) ** 2) * 4
    img = (img + glint) * vignette + rng.normal(0, 0.03, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.float32), lab, Geometry((1.0, 1.0))


def tumour_phantom(rng: np.random.Generator, shape=(20, 40, 48)) -> Phantom:
    """Two-channel brain-MRI-like volume (channel 0 T1c-like: bright core; channel 1 FLAIR-like: bright oedema),
    zero outside an off-centre head, labels 1 oedema and 2 core (nested: the regions are whole = {1, 2} and
    core = {2}); anisotropic 1.2 x 1.2 x 2.5 mm voxels."""
    zz, yy, xx = _grid(shape)
    nz, ny, nx = shape
    head_c = (nz / 2, ny * rng.uniform(0.4, 0.5), nx * rng.uniform(0.4, 0.5))
    head = ((zz - head_c[0]) / (nz * 0.42)) ** 2 + ((yy - head_c[1]) / (ny * 0.36)) ** 2 \
        + ((xx - head_c[2]) / (nx * 0.34)) ** 2 < 1
    c = [hc + rng.uniform(-0.12, 0.12) * s for hc, s in zip(head_c, shape)]
    d = np.sqrt(((zz - c[0]) * 2.5) ** 2 + ((yy - c[1]) * 1.2) ** 2 + ((xx - c[2]) * 1.2) ** 2)
    r_core, r_oed = rng.uniform(3.5, 6.0), rng.uniform(8.0, 11.0)
    lab = np.zeros(shape, np.uint8)
    lab[(d < r_oed) & head] = 1
    lab[(d < r_core) & head] = 2
    t1c = np.where(lab == 2, 1.0, np.where(lab == 1, 0.45, 0.55))
    flair = np.where(lab == 2, 0.7, np.where(lab == 1, 0.95, 0.4))
    img = np.stack([t1c, flair]) * (1 + 0.05 * _smooth_field(rng, shape, 2))
    img = ndimage.gaussian_filter(img, (0, 0.5, 0.7, 0.7)) + rng.normal(0, 0.06, img.shape)
    img = np.where(head, img * 500 * rng.uniform(0.8, 1.2), 0).astype(np.float32)
    return img, lab, Geometry((1.2, 1.2, 2.5))


PHANTOMS = {"synth2d": cardiac_phantom, "synth3d": abdomen_phantom, "synthpolyp": polyp_phantom,
            "synthmm": tumour_phantom, "synthla": atrium_phantom, "synthabd": abdomen15_phantom,
            "synthcolon": functools.partial(polyp_phantom, scale=2.0)}
SEEDS = {"synth2d": 20241, "synth3d": 20242, "synthpolyp": 20243, "synthmm": 20244, "synthla": 20245,
         "synthabd": 20246, "synthcolon": 20247}
COLOUR = ("synthpolyp", "synthcolon")  # written as JPEG images and masks in Kvasir-SEG's layout


def _write_jpeg(path: Path, array: np.ndarray) -> None:
    """(H, W) or (H, W, 3) uint8 as JPEG (SimpleITK), atomically."""
    import SimpleITK as sitk

    from sslseg.io import atomic_path

    img = sitk.GetImageFromArray(array, isVector=array.ndim == 3)
    with atomic_path(path, suffix=".jpg") as tmp:
        sitk.WriteImage(img, str(tmp))


def generate(name: str, raw: Path) -> None:
    """Write every case of the frozen splits in its raw layout: NIfTI ``imagesTr/{case}_{channel:04d}.nii.gz`` +
    ``labelsTr/{case}.nii.gz``, or, for the 2D colour set, JPEG ``images/{case}.jpg`` + ``masks/{case}.jpg``
    (mask 0/255, as Kvasir-SEG)."""
    ids = [c for split in ("train", "val", "test") for c in read_split(name, split)]
    for cid in ids:
        rng = np.random.default_rng([SEEDS[name], int(cid.rsplit("_", 1)[1])])
        image, label, geom = PHANTOMS[name](rng)
        if name in COLOUR:
            _write_jpeg(raw / "images" / f"{cid}.jpg", np.moveaxis(image, 0, -1).astype(np.uint8))
            _write_jpeg(raw / "masks" / f"{cid}.jpg", (label * 255).astype(np.uint8))
            continue
        for k, channel in enumerate(image):
            write_nifti(raw / "imagesTr" / f"{cid}_{k:04d}.nii.gz", channel, geom)
        write_nifti(raw / "labelsTr" / f"{cid}.nii.gz", label, geom)
    write_json(raw / "dataset.json", {"name": name, "generator": "sslseg.data.synthetic", "cases": ids})


def _download(name: str):
    def download(source: str, raw: Path, sha256: str | None = None) -> dict:
        generate(name, raw)
        return {"kind": "generated"}

    return download


def _register() -> None:
    from sslseg.data.prepare import (ct_window, minmax, prepare_image_folder, prepare_nifti, rgb_unit, zscore,
                                     zscore_nonzero)

    def register(info: DatasetInfo, preprocess=prepare_nifti, **kw) -> None:
        DATASETS.register(info.name)(DatasetSpec(info, _download(info.name), preprocess, **kw))

    register(DatasetInfo(
        "synth2d", classes={1: "RV", 2: "Myo", 3: "LV"}, tail=(1,), dims=2, modality="MRI (synthetic cine)",
        intensity="per-volume min-max to [0, 1]", budget_unit="labelled patients", budgets=(1, 2, 4)),
        normalise=minmax)
    register(DatasetInfo(
        "synth3d", classes=ORGANS, tail=(6, 7), dims=3, modality="CT (synthetic)",
        intensity="CT window [-160, 240] HU to [0, 1]", budget_unit="labelled volumes", budgets=(2, 4),
        mirror=False), normalise=ct_window(-160, 240))
    register(DatasetInfo(
        "synthla", classes={1: "LA"}, dims=3, modality="LGE-MRI (synthetic)",
        intensity="per-volume z-score (as UA-MT's LA release)", budget_unit="labelled volumes", budgets=(2, 4)),
        normalise=zscore)
    register(DatasetInfo(
        "synthabd", classes=AMOS_CLASSES, tail=AMOS_TAIL, dims=3, modality="CT (synthetic)",
        intensity="CT clipped to [-125, 275], (x + 125) / 400 (DuoMod-Net)", budget_unit="labelled volumes",
        budgets=(2, 4), mirror=False), normalise=ct_window(-125, 275))
    register(DatasetInfo(
        "synthpolyp", classes={1: "polyp"}, dims=2, modality="RGB endoscopy (synthetic)",
        intensity="RGB / 255", budget_unit="labelled images", budgets=(4, 8), in_channels=3,
        channel_names=("R", "G", "B"), spacing_known=False), preprocess=prepare_image_folder,
        normalise=rgb_unit)
    register(DatasetInfo(
        "synthcolon", classes={1: "polyp"}, dims=2, modality="RGB endoscopy (synthetic)",
        intensity="RGB / 255", budget_unit="labelled images", budgets=(12, 36), in_channels=3,
        channel_names=("R", "G", "B"), spacing_known=False), preprocess=prepare_image_folder,
        normalise=rgb_unit)
    register(DatasetInfo(
        "synthmm", classes={1: "oedema", 2: "core"}, dims=3, modality="MRI, two sequences (synthetic)",
        intensity="per channel z-score over the non-zero (head) voxels", budget_unit="labelled volumes",
        budgets=(2, 4), in_channels=2, channel_names=("T1c", "FLAIR"), regions={"whole": (1, 2), "core": (2,)}),
        normalise=zscore_nonzero, target_spacing=(1.5, 1.5, 1.5), crop="nonzero")


_register()
