"""Generate, once, the frozen splits of the releases whose papers published none; the output is committed under
sslseg/data/splits/ and this script documents how it was made (rerunning it rewrites the same files).

FLARE22 (the 50 labelled cases of FLARE22Train.zip, FLARE22_Tr_0001 ... 0050; DuoMod-Net publishes no split):
a permutation of the 50 ids by numpy's default_rng(2022) -> test = its first 10, val = the next 5, train = the
remaining 35 in permutation order (a budget of n labelled volumes = the first n of train.list).

WORD (150 CTs word_0001 ... word_0150; DuoMod-Net publishes no split): test = the 30 cases of the official test
set, whose labels WORD publishes as WORD_V0.1.0_labelsTs.zip (SHA-256 0552b1e2...6a46d; its member names are the
list below). The official 100 / 20 partition of the other 120 (imagesTr / imagesVal of the encrypted archive)
could not be read without the archive, so: a permutation of those 120 ids by default_rng(2022) -> val = its first
20, train = the remaining 100 in permutation order (budgets 2 / 5 / 10 = the first n of train.list). Both official
folders carry labels; the download finds a case in either.

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


# the member names of WORD_V0.1.0_labelsTs.zip (labelsTs/word_XXXX.nii.gz)
WORD_TEST = (14, 16, 17, 19, 21, 23, 24, 33, 34, 37, 43, 50, 52, 54, 57, 60, 69, 74, 76, 77, 88, 92, 97, 99, 103,
             110, 120, 124, 129, 131)


def word() -> None:
    test = [f"word_{i:04d}" for i in WORD_TEST]
    rest = [f"word_{i:04d}" for i in range(1, 151) if i not in WORD_TEST]
    order = [rest[i] for i in np.random.default_rng(2022).permutation(len(rest))]
    out = SPLITS / "word"
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("test", test), ("val", order[:20]), ("train", order[20:])):
        (out / f"{name}.list").write_text("\n".join(part) + "\n")


if __name__ == "__main__":
    flare22()
    word()
