"""Training-loop speed of `sslseg train` with and without background batch preparation, and with the schedule's
precision / memory-layout settings, on a prepared data set.

    python benchmarks/bench_train.py --prepared resources/prepared/acdc [--method mean_teacher] \\
        [--iterations 60] [--repeat 3] [--device cpu] [--batch 4 --patch 128] [--settings ...]

Each setting trains the same run (ACDC labelled budget 7, seed 0, the acdc-cpu UNet 8-128, no validation) for
``--iterations`` iterations in this process; the loop's wall time (provenance ``wall_time_s``: first to last
iteration, start-up excluded) over the iterations gives s/it. Settings run in turn, ``--repeat`` rounds; each line
is the median, with the ratio against the first setting (prefetch off, fp32). Settings: ``prefetch=N``
(``SSLSEG_PREFETCH``; 0 = batches made in the loop), ``precision=fp32|bf16|fp16``, ``channels_last=1``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

from sslseg.config import run_spec, validate
from sslseg.train import train

MODEL = {"name": "unet", "channels": [8, 16, 32, 64, 128], "dropout": [0.05, 0.1, 0.2, 0.3, 0.5]}


def spec(method: str, iterations: int, batch: int, patch: int, precision: str, channels_last: bool):
    sched = {"iterations": iterations, "batch_labelled": batch, "batch_unlabelled": batch, "patch": [patch, patch]}
    if precision != "fp32":
        sched["precision"] = precision
    if channels_last:
        sched["channels_last"] = True
    cfg = validate({"benchmarks": {"b": {"dataset": "acdc", "methods": [method], "reference": method, "labels": [7], "seeds": [0],
                                         "model": MODEL, "schedule": sched,
                                         "validation": {"every": 0, "selection": "last"}}}})
    return run_spec(cfg, "b", method, 7, 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepared", type=Path, required=True)
    ap.add_argument("--method", default="mean_teacher")
    ap.add_argument("--iterations", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--settings", nargs="+", default=["prefetch=0", "prefetch=2", "prefetch=2,precision=bf16",
                                                      "prefetch=2,channels_last=1"])
    a = ap.parse_args()
    settings = [dict(kv.split("=") for kv in s.split(",")) for s in a.settings]
    times: dict[str, list[float]] = {s: [] for s in a.settings}
    for _ in range(a.repeat):
        for name, s in zip(a.settings, settings):
            os.environ["SSLSEG_PREFETCH"] = s.get("prefetch", "2")
            sp = spec(a.method, a.iterations, a.batch, a.patch, s.get("precision", "fp32"),
                      s.get("channels_last", "0") == "1")
            with tempfile.TemporaryDirectory() as tmp:
                train(sp, a.prepared, Path(tmp), device=a.device, log_every=10**9)
                prov = json.loads((Path(tmp) / "provenance.json").read_text())
            times[name].append(prov["wall_time_s"] / a.iterations)
    base = statistics.median(times[a.settings[0]])
    print(f"{a.method}, batch {a.batch}+{a.batch}, {a.patch}^2, {a.iterations} iterations, {a.device}, "
          f"{prov['deterministic'].split('threads=')[-1]} threads; median of {a.repeat}:")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"  {name:32s} {m:.3f} s/it  speed x{base / m:.2f}  (runs {', '.join(f'{t:.3f}' for t in ts)})")


if __name__ == "__main__":
    main()
