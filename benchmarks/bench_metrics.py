"""Speed of sslseg.metrics against medpy 0.5.2 on the same masks (values must agree exactly).

    python benchmarks/bench_metrics.py [--repeat 3]

Prints, per shape, the median wall time of Dice+Jaccard+HD95+ASD for one case x class with each implementation and
the ratio medpy / sslseg. sslseg computes both surface-distance directions once and crops to the union bounding box.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from medpy.metric import binary as medpy
from scipy import ndimage

from sslseg import metrics


def masks(shape, rng):
    """A blob-like reference and a perturbed prediction occupying a fraction of the volume (as organs do)."""
    g = ndimage.gaussian_filter(rng.random(shape), 3)
    ref = g > np.quantile(g, 0.6)
    pred = ndimage.binary_dilation(ref, iterations=1) ^ (rng.random(shape) > 0.995)
    return pred, ref


def medpy_all(p, r, sp):
    return medpy.dc(p, r), medpy.jc(p, r), medpy.hd95(p, r, sp), medpy.asd(p, r, sp)


def ours_all(p, r, sp):
    a, b = metrics.surface_distances(p, r, sp)
    return metrics.dc(p, r), metrics.jc(p, r), float(np.percentile(np.hstack((a, b)), 95)), float(a.mean())


def timed(fn, *args, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - t)
    return float(np.median(times)), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'shape':>16} {'fg %':>6} {'medpy s':>9} {'sslseg s':>9} {'ratio':>7}  equal")
    for shape, sp in [((10, 256, 216), (10.0, 1.5, 1.5)), ((96, 160, 160), (2.0, 1.5, 1.5)),
                      ((128, 256, 256), (2.5, 0.8, 0.8))]:
        p, r = masks(shape, rng)
        crop = tuple(slice(s // 4, s // 4 + s // 3) for s in shape)  # an organ-sized structure in a large volume
        p2, r2 = np.zeros(shape, bool), np.zeros(shape, bool)
        p2[crop], r2[crop] = p[crop], r[crop]
        tm, vm = timed(medpy_all, p2, r2, sp, repeat=args.repeat)
        to, vo = timed(ours_all, p2, r2, sp, repeat=args.repeat)
        print(f"{str(shape):>16} {100 * r2.mean():6.2f} {tm:9.3f} {to:9.3f} {tm / to:7.1f}  {vm == vo}")


if __name__ == "__main__":
    main()
