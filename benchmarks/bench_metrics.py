"""Speed of sslseg.metrics against medpy 0.5.2 on real ACDC volumes and an LA-like 3D set, values compared.

    python benchmarks/bench_metrics.py --acdc resources/prepared/acdc \\
        --pred results/acdc-cpu/supervised/l7/seed0/pred [--la 20] [--repeat 3]

Per case (all classes, with the reference's spacing): medpy's dc + jc + hd95 + asd per class against
``sslseg.metrics.case_metrics`` (one call), and against sslseg's four public functions called the same way as
medpy's; the two implementations are interleaved case by case, each timing the median of ``--repeat`` calls.
Prints the per-case wall-time ratios medpy / sslseg (median, range), the ratio of the wall-time totals, the ratio
of the CPU-time totals (steadier when other jobs share the cores) and the largest |difference| of any value.

ACDC: the prepared test volumes (reference on its original grid) and a run's predictions (``--pred``); without
``--pred``, a deterministic perturbation of the reference (one-voxel shift, a random erosion). LA-like: ``--la``
generated volumes of the Left Atrium set's size after its crop (about 88 x 140 x 190 at 0.625 mm), a smooth atrium
filling a third of the crop's bounding box, the prediction a shifted, locally dilated and eroded copy.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from medpy.metric import binary as medpy
from scipy import ndimage

from sslseg import metrics


def four_metrics(lib, pred, ref, classes, spacing):
    """dc, jc, hd95, asd of each class through ``lib`` (medpy's ``binary`` module or ``sslseg.metrics``)."""
    out = []
    for c in classes:
        p, r = pred == c, ref == c
        out.append((lib.dc(p, r), lib.jc(p, r), lib.hd95(p, r, spacing), lib.asd(p, r, spacing)))
    return out


def medpy_case(pred, ref, classes, spacing):
    return four_metrics(medpy, pred, ref, classes, spacing)


def public_case(pred, ref, classes, spacing):
    metrics._LAST.clear()  # hd95 and asd of one pair share their distances; never across repeats of a timing
    return four_metrics(metrics, pred, ref, classes, spacing)


def ours_case(pred, ref, classes, spacing):
    rows = metrics.case_metrics(pred, ref, classes, spacing)
    return [(r["dice"], r["jaccard"], r["hd95"], r["asd"]) for r in rows]


def timed(fn, args, repeat):
    """Median wall time and CPU time of ``repeat`` calls, and the result."""
    times, out = [], None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn(*args)
        times.append((time.perf_counter() - t, time.process_time() - c))
    return np.median(np.array(times), axis=0), out


def perturb(ref: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A prediction-like label map: the reference shifted by one voxel in-plane with random boundary erosion."""
    pred = np.roll(ref, 1, axis=-1)
    edge = (pred > 0) & ~ndimage.binary_erosion(pred > 0)
    pred[edge & (rng.random(pred.shape) < 0.3)] = 0
    return pred


def acdc_cases(prepared: Path, pred_dir: Path | None, rng):
    from sslseg.data import load_prepared
    from sslseg.io import read_case, read_nifti

    info, cases = load_prepared(prepared)
    for cid in cases.loc[cases["split"] == "test", "case"]:
        case = read_case(prepared / "cases" / f"{cid}.h5", image=False, original=True)
        ref = case.label_orig.astype(np.int64)
        geom = case.source.geom if case.source is not None else case.geom
        pred = (read_nifti(pred_dir / f"{cid}.nii.gz")[0].astype(np.int64) if pred_dir
                else perturb(ref, rng))
        yield cid, pred, ref, list(info.classes), geom.spacing_zyx


def la_cases(n: int, rng):
    for i in range(n):
        shape = tuple(int(s + rng.integers(-8, 9)) for s in (88, 140, 190))
        zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
        wobble = ndimage.gaussian_filter(rng.standard_normal(shape), 8) * 12
        ref = ((zz / 0.72) ** 2 + (yy / 0.74) ** 2 + (xx / 0.70) ** 2 + wobble < 1).astype(np.int64)
        pred = np.roll(ref, (1, 2, -1), axis=(0, 1, 2))
        grow = ndimage.gaussian_filter(rng.standard_normal(shape), 4) > 0.05
        pred = np.where(grow, ndimage.binary_dilation(pred, iterations=2), ndimage.binary_erosion(pred)).astype(
            np.int64)
        yield f"la_like_{i:02d}", pred, ref, [1], (0.625, 0.625, 0.625)


def run(name, cases, repeat):
    ratios_case, ratios_pub, tot, cpu = [], [], np.zeros(3), np.zeros(3)
    worst, bbox = 0.0, []
    for cid, pred, ref, classes, spacing in cases:
        tm, vm = timed(medpy_case, (pred, ref, classes, spacing), repeat)
        to, vo = timed(ours_case, (pred, ref, classes, spacing), repeat)
        tp, vp = timed(public_case, (pred, ref, classes, spacing), repeat)
        worst = max(worst, float(np.max(np.abs(np.array(vm) - np.array(vo)))),
                    float(np.max(np.abs(np.array(vm) - np.array(vp)))))
        ratios_case.append(tm[0] / to[0])
        ratios_pub.append(tm[0] / tp[0])
        tot += (tm[0], to[0], tp[0])
        cpu += (tm[1], to[1], tp[1])
        box = ndimage.find_objects(((pred > 0) | (ref > 0)).astype(np.uint8))[0]
        bbox.append(np.prod([s.stop - s.start for s in box]) / ref.size)
    rc, rp = np.array(ratios_case), np.array(ratios_pub)
    print(f"{name}: {len(rc)} cases, union bounding box {100 * min(bbox):.0f}-{100 * max(bbox):.0f} % of the volume")
    print(f"  medpy {tot[0]:.2f} s, case_metrics {tot[1]:.3f} s, public functions {tot[2]:.3f} s")
    print(f"  case_metrics: ratio per case median {np.median(rc):.1f} (range {rc.min():.1f}-{rc.max():.1f}), "
          f"of totals {tot[0] / tot[1]:.1f}")
    print(f"  public dc/jc/hd95/asd: ratio per case median {np.median(rp):.1f} (range {rp.min():.1f}-{rp.max():.1f}), "
          f"of totals {tot[0] / tot[2]:.1f}")
    print(f"  CPU time: medpy {cpu[0]:.2f} s, case_metrics {cpu[1]:.3f} s (ratio {cpu[0] / cpu[1]:.1f}), public "
          f"functions {cpu[2]:.3f} s (ratio {cpu[0] / cpu[2]:.1f})")
    print(f"  max |difference| of any value: {worst:g}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--acdc", type=Path, help="prepared ACDC folder (resources/prepared/acdc)")
    ap.add_argument("--pred", type=Path, help="a run's prediction folder for the ACDC test split")
    ap.add_argument("--la", type=int, default=20, help="LA-like generated volumes (0: none)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    if args.acdc:
        run(f"ACDC test volumes ({'predictions of ' + str(args.pred) if args.pred else 'perturbed references'})",
            acdc_cases(args.acdc, args.pred, rng), args.repeat)
    if args.la:
        run("LA-like volumes", la_cases(args.la, rng), args.repeat)


if __name__ == "__main__":
    main()
