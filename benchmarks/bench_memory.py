"""Peak memory of a 3D training run on a data set larger than it: lazy case reads keep the footprint bounded.

    python benchmarks/bench_memory.py --cases 200 --out benchmarks/out/memory [--iterations 20]

Writes ``--cases`` prepared volumes of about 200 x 200 x 150 voxels (shapes jittered by up to +-10 per axis, 7
classes of smooth blobs, registered as the ``synth3d`` dataset so the trainer accepts them) straight into the
prepared layout, then runs ``sslseg train`` (Mean Teacher, 3D UNet, 64 x 128 x 128 patches, batch 2 + 2, a
quarter of the patches centred on foreground) as a subprocess twice: with the default case cache and with
``SSLSEG_CACHE_MB=0`` (every patch read from disk). Prints the decoded size of the training set beside each run's
peak resident set size (``getrusage`` of the child) and wall time. Generation is skipped when the folder exists.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from scipy import ndimage

from sslseg.data import DATASETS
from sslseg.data.prepare import write_tables
from sslseg.io import Case, Geometry, write_case


def volume(rng: np.random.Generator, shape) -> Case:
    field = ndimage.zoom(rng.standard_normal((8, 10, 10)).astype(np.float32), [s / n for s, n in
                                                                              zip(shape, (8, 10, 10))], order=1)
    image = (0.5 + 0.1 * field[: shape[0], : shape[1], : shape[2]]).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    for cls in range(1, 8):
        centre = [rng.uniform(0.2, 0.8) * s for s in shape]
        radius = rng.uniform(6, 30) * (1.0 if cls < 6 else 0.3)
        blob = sum(((g - c) / radius) ** 2 for g, c in zip(grid, centre)) < 1
        label[blob] = cls
        image[blob] += 0.05 * cls
    return Case(image[None], label, Geometry((1.5, 1.5, 2.0)), fg=True)


def generate(out: Path, n: int) -> float:
    """Write n training volumes (4 labelled) + 2 validation volumes; return the decoded bytes of the training set."""
    rng = np.random.default_rng(0)
    rows, total = [], 0
    for i in range(n + 2):
        shape = tuple(int(s + rng.integers(-10, 11)) for s in (150, 200, 200))
        split = "train" if i < n else "val"
        cid = f"big_{i:04d}"
        case = volume(rng, shape)
        case.fg = split == "train"
        write_case(out / "cases" / f"{cid}.h5", case)
        rows.append(dict(case=cid, patient=cid, split=split, shape=shape, spacing=(2.0, 1.5, 1.5),
                         labelled_2=i < 2, labelled_4=i < 4))
        total += int(np.prod(shape)) * 5 if split == "train" else 0
        if i % 20 == 0:
            print(f"  generated {i + 1}/{n + 2}", flush=True)
    spec = DATASETS["synth3d"]
    write_tables(spec, out, rows, {"source": "benchmarks/bench_memory.py"})
    (out / "decoded_bytes.json").write_text(json.dumps({"train_bytes": total}))
    return total


def run(out: Path, cfg: Path, cache_mb: str | None, label: str) -> tuple[float, float]:
    env = dict(os.environ, SSLSEG_THREADS="2")
    if cache_mb is not None:
        env["SSLSEG_CACHE_MB"] = cache_mb
    cmd = [sys.executable, "-m", "sslseg", "train", "--config", str(cfg), "--bench", "big", "--method",
           "mean_teacher", "--labels", "4", "--seed", "0", "--prepared", str(out / "prepared"), "--out",
           str(out / f"run-{label}")]
    t0 = time.time()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    # the largest resident set of any waited-for child: this process starts exactly one (see main)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--out", default="benchmarks/out/memory")
    args = ap.parse_args()
    out = Path(args.out)
    prepared = out / "prepared"
    if (prepared / "cases.csv").is_file():
        total = json.loads((prepared / "decoded_bytes.json").read_text())["train_bytes"]
    else:
        t0 = time.time()
        total = generate(prepared, args.cases)
        print(f"generated {args.cases} volumes in {time.time() - t0:.0f} s", flush=True)
    cfg = out / "config.yaml"
    cfg.write_text(yaml.safe_dump({"benchmarks": {"big": {
        "dataset": "synth3d", "methods": ["supervised", "mean_teacher"], "labels": [4], "seeds": [0],
        "model": {"name": "unet", "channels": [8, 16, 32, 64], "dropout": [0, 0, 0, 0]},
        "schedule": {"iterations": args.iterations, "batch_labelled": 2, "batch_unlabelled": 2,
                     "patch": [64, 128, 128], "fg_oversample": 0.25},
        "validation": {"every": args.iterations, "batch_size": 2}}}}))
    # separate processes, so each peak is its own: the first run in this process, the second in a fresh one
    label = os.environ.get("BENCH_RUN")
    if label:
        peak, wall = run(out, cfg, None if label == "cache" else "0", label)
        print(json.dumps({"label": label, "peak_rss_gib": round(peak, 2), "wall_s": round(wall, 1)}))
        return
    results = []
    for label in ("cache", "nocache"):
        r = subprocess.run([sys.executable, __file__, "--cases", str(args.cases), "--iterations",
                            str(args.iterations), "--out", str(out)], env=dict(os.environ, BENCH_RUN=label),
                           check=True, capture_output=True, text=True)
        results.append(json.loads(r.stdout.strip().splitlines()[-1]))
    gib = total / 2**30
    print(f"training set: {args.cases} volumes, {gib:.1f} GiB decoded (float32 image + uint8 label)")
    print(f"{'run':>28} {'peak RSS GiB':>13} {'data / peak':>12} {'wall s':>8}")
    for r in results:
        name = "default cache (1 GiB/store)" if r["label"] == "cache" else "SSLSEG_CACHE_MB=0"
        print(f"{name:>28} {r['peak_rss_gib']:>13.2f} {gib / r['peak_rss_gib']:>12.1f} {r['wall_s']:>8.1f}")


if __name__ == "__main__":
    main()
