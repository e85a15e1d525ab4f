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

The 2D colour sets of DEC-Seg, from the membership lists in workflow/scripts/split_sources/ (their provenance in
its README.md):

polyp (PraNet's split): test = PraNet's five test sets (Kvasir 100, CVC-ClinicDB 62, CVC-300 60, CVC-ColonDB 380,
ETIS-LaribPolypDB 196); its 1,450 training images (CVC-ClinicDB frames 1-612 less the 62 test frames, Kvasir-SEG
less the 100 test images) permuted by default_rng(2022) -> val = the first 50 (PraNet has no validation set and
selection never sees a test set), train = the other 1,400 (budgets 145 / 435 = DEC-Seg's, the first n).
Case ids carry their set: kvasir_<id>, clinicdb_<frame>, cvc300_<frame>, colondb_<frame>, etis_<frame>.
kvasir (the Kvasir-SEG part alone): test = the 100 Kvasir test images, the 900 others permuted by
default_rng(2022) -> val 30, train 870 (budgets 87 / 261 = 10 / 30 %).
isic2018: the 2,594 images of Task 1's training set permuted by default_rng(2018) -> train = the first 2,075
(80 %), test = the other 519 (DEC-Seg's labelled 207 / 622 are 10 / 30 % of 2,075: its lists are not published,
the 80 / 20 re-split is inferred from them); val = the 100 images of the official validation set.
brainmri (LGG, kaggle_3m): the 1,373 slices with tumour; the 110 patients permuted by default_rng(2019) and
taken in that order into test until it holds >= 20 % of the slices, then val (>= 5 %), the rest train (patients
never straddle two splits); a patient's slices in slice order. Case ids <patient>_<slice>; budgets 103 / 310
(DEC-Seg's) = the first n of train.list.

    python workflow/scripts/make_splits.py
"""

from pathlib import Path

import numpy as np

SPLITS = Path(__file__).resolve().parents[2] / "sslseg" / "data" / "splits"
SOURCES = Path(__file__).resolve().parent / "split_sources"
PRANET_TEST = {"Kvasir": "kvasir", "CVC-ClinicDB": "clinicdb", "CVC-300": "cvc300", "CVC-ColonDB": "colondb",
               "ETIS-LaribPolypDB": "etis"}


def _lines(name: str) -> list[str]:
    return [line.strip() for line in (SOURCES / name).read_text().splitlines() if line.strip()]


def _write(dataset: str, **parts: list[str]) -> None:
    out = SPLITS / dataset
    out.mkdir(parents=True, exist_ok=True)
    for name, ids in parts.items():
        (out / f"{name}.list").write_text("\n".join(ids) + "\n")


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


def _pranet_test() -> dict[str, list[str]]:
    return {s: [f"{p}_{Path(n).stem}" for n in _lines(f"pranet_test_{s}.txt")] for s, p in PRANET_TEST.items()}


def polyp() -> None:
    test = _pranet_test()
    clinic = [f"clinicdb_{i}" for i in range(1, 613) if f"clinicdb_{i}" not in test["CVC-ClinicDB"]]
    kvasir = [f"kvasir_{k}" for k in sorted(_lines("kvasir_seg_ids.txt")) if f"kvasir_{k}" not in test["Kvasir"]]
    pool = clinic + kvasir
    assert len(pool) == 1450 and sum(map(len, test.values())) == 798
    order = [pool[i] for i in np.random.default_rng(2022).permutation(len(pool))]
    _write("polyp", train=order[50:], val=order[:50], test=[c for ids in test.values() for c in ids])


def kvasir() -> None:
    test = _pranet_test()["Kvasir"]
    pool = [f"kvasir_{k}" for k in sorted(_lines("kvasir_seg_ids.txt")) if f"kvasir_{k}" not in test]
    assert len(pool) == 900
    order = [pool[i] for i in np.random.default_rng(2022).permutation(len(pool))]
    _write("kvasir", train=order[30:], val=order[:30], test=test)


def isic2018() -> None:
    pool = sorted(_lines("isic2018_train.txt"))
    assert len(pool) == 2594
    order = [pool[i] for i in np.random.default_rng(2018).permutation(len(pool))]
    _write("isic2018", train=order[:2075], val=sorted(_lines("isic2018_val.txt")), test=order[2075:])


def brainmri() -> None:
    import csv

    with open(SOURCES / "lgg_slices.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["has_tumour"] == "1"]
    slices: dict[str, list[str]] = {}
    for r in sorted(rows, key=lambda r: (r["patient"], int(r["slice"]))):
        slices.setdefault(r["patient"], []).append(f"{r['patient']}_{r['slice']}")
    patients = sorted(slices)
    order = [patients[i] for i in np.random.default_rng(2019).permutation(len(patients))]
    parts, total = {"test": [], "val": [], "train": []}, len(rows)
    for p in order:
        key = ("test" if len(parts["test"]) < 0.20 * total else
               "val" if len(parts["val"]) < 0.05 * total else "train")
        parts[key].extend(slices[p])
    _write("brainmri", **parts)


if __name__ == "__main__":
    flare22()
    word()
    polyp()
    kvasir()
    isic2018()
    brainmri()
