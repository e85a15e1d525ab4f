"""Generate, once, the frozen splits of the releases whose papers published none; the output is committed under
sslseg/data/splits/ and this script documents how it was made (rerunning it rewrites the same files).

FLARE22 (the 50 labelled cases of FLARE22Train.zip, FLARE22_Tr_0001 ... 0050; DuoMod-Net publishes no split):
a permutation of the 50 ids by numpy's default_rng(2022) -> test = its first 10, val = the next 5, train = the
remaining 35 in permutation order (a budget of n labelled volumes = the first n of train.list).

    python workflow/scripts/make_splits.py
"""

from pathlib import Path

import numpy as np

SPLITS = Path(__file__).resolve().parents[2] / "sslseg" / "data" / "splits"


def flare22() -> None:
    ids = [f"FLARE22_Tr_{i:04d}" for i in range(1, 51)]
    order = [ids[i] for i in np.random.default_rng(2022).permutation(len(ids))]
    out = SPLITS / "flare22"
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("test", order[:10]), ("val", order[10:15]), ("train", order[15:])):
        (out / f"{name}.list").write_text("\n".join(part) + "\n")


if __name__ == "__main__":
    flare22()
