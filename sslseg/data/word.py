"""WORD (Luo et al., MedIA 2022), 150 abdominal CTs with 16 organs, in DuoMod-Net's convention (label 16, the right
femoral head, merged into 15, the left one: 15 foreground classes).

Source: the release ``WORD-V0.1.0.zip`` (AES-encrypted with the password WORD's README publishes; SHA-256 pinned;
read with pyzipper), a ``file://`` URL of it, its unpacked folder (not verifiable), or a folder holding the zip. Its
layout is ``WORD-V0.1.0/{imagesTr,labelsTr}`` (100), ``{imagesVal,labelsVal}`` (20) and ``imagesTs`` (30), files
``word_XXXX.nii.gz``. The test labels were published later, in WORD's repository, as ``WORD_V0.1.0_labelsTs.zip``
(SHA-256 pinned): taken from the source when it holds ``labelsTs`` or that zip (in the folder, or beside the release
zip), else fetched from ``LABELS_TS_URL``. The archive lives on Google Drive and BaiduPan only, behind quota and
confirmation pages, so there is no default source: ``sources: {word: <path>}``.

Split: the 30 official test cases (the labels zip's members); DuoMod-Net publishes no split for the other 120 and
their official 100 / 20 partition could not be read without the archive, so ``workflow/scripts/make_splits.py``
drew val (20) and train (100) once with a fixed seed (committed); budgets 2 / 5 / 10 labelled volumes (DuoMod-Net's
2 / 5 / 10 % of 100) = the first n of ``train.list``. Preparation as DuoMod-Net's (``amos``): 1.5 x 1.5 x 2.0 mm
(image linear, label nearest), [-125, 275] -> (x + 125) / 400, predictions back by nearest neighbour; the original
labels kept for scoring are merged the same way.

Tail classes: the five smallest organs by their share of the foreground voxels in the 30 released test labels
(adrenal 0.22 %, esophagus 0.29, gallbladder 0.43, rectum 1.31, duodenum 1.38).
"""

from __future__ import annotations

from pathlib import Path

from sslseg import SslsegError
from sslseg.data import DATASETS, DatasetInfo, read_split
from sslseg.data.amos import duomod_spec, keep_pairs
from sslseg.data.download import check_digest, incoming, local_path, release_root, unpack

__all__ = ["ARCHIVE", "SHA256", "PASSWORD", "LABELS_TS", "LABELS_TS_URL", "LABELS_TS_SHA256", "CLASSES", "TAIL"]

ARCHIVE = "WORD-V0.1.0.zip"
SHA256 = "1ef1e48f8b41d72d733c5cdd91e1238d9b345d88c0de0c902e356310901f3115"
PASSWORD = "word@uestc"  # published in WORD's README
LABELS_TS = "WORD_V0.1.0_labelsTs.zip"
LABELS_TS_URL = "https://github.com/HiLab-git/WORD/raw/main/WORD_V0.1.0_labelsTs.zip"
LABELS_TS_SHA256 = "0552b1e208a8a5345a1c12003d4f1d010621c6ef65bdd62bff85a32b2976a46d"
CLASSES = {1: "liver", 2: "spleen", 3: "kidney_l", 4: "kidney_r", 5: "stomach", 6: "gallbladder", 7: "esophagus",
           8: "pancreas", 9: "duodenum", 10: "colon", 11: "intestine", 12: "adrenal", 13: "rectum", 14: "bladder",
           15: "femur_head"}  # 15: both femoral heads (WORD's 15 left and 16 right), as DuoMod-Net
TAIL = (6, 7, 9, 12, 13)  # gallbladder, esophagus, duodenum, adrenal, rectum
PARTS = ("Tr", "Val", "Ts")


def _locate(root: Path, labels_ts: Path | None, case: str):
    for part in PARTS:
        img = root / f"images{part}" / f"{case}.nii.gz"
        lab = root / f"labels{part}" / f"{case}.nii.gz"
        if part == "Ts" and labels_ts is not None:
            lab = labels_ts / f"{case}.nii.gz"
        if img.is_file() and lab.is_file():
            return img, lab
    return None


def _test_labels(source: str, tree: Path, root: Path, work: Path) -> Path:
    """The folder of the test labels: the release's own ``labelsTs``, else ``LABELS_TS`` from the source's folder
    or beside the source zip (pinned SHA-256), else fetched from WORD's repository."""
    if (root / "labelsTs").is_dir():
        return root / "labelsTs"
    local = local_path(source)
    places = [tree / LABELS_TS] + ([] if local is None else [local / LABELS_TS, local.parent / LABELS_TS])
    near = [p for p in places if p.is_file()]
    labels, digest = unpack(str(near[0]) if near else LABELS_TS_URL, work, None)
    check_digest(str(near[0]) if near else LABELS_TS_URL, digest, LABELS_TS_SHA256, LABELS_TS)
    found = release_root(labels, f"labelsTs/{read_split('word', 'test')[0]}.nii.gz")
    if found is None:
        raise SslsegError(f"{near[0] if near else LABELS_TS_URL}: not the layout of {LABELS_TS} (no labelsTs/)")
    return found / "labelsTs"


def download(source: str, raw: Path, sha256: str | None = None) -> dict:
    """The 150 cases (train, val, test) with their labels into ``raw/cases``."""
    if not source:
        raise SslsegError(f"word: {ARCHIVE} is distributed through Google Drive and BaiduPan only (see WORD's README); "
                          "download it and set sources: {word: <the zip, or a folder with it and " + LABELS_TS + ">}")
    cases = [c for split in ("train", "val", "test") for c in read_split("word", split)]
    probe = f"imagesTs/{read_split('word', 'test')[0]}.nii.gz"
    with incoming(raw) as work:
        tree, digest = unpack(source, work / "release", None, password=PASSWORD)
        if digest is None and release_root(tree, probe) is None and (tree / ARCHIVE).is_file():
            tree, digest = unpack(str(tree / ARCHIVE), work / "release", None, password=PASSWORD)
        check_digest(source, digest, sha256 or SHA256, ARCHIVE)
        root = release_root(tree, probe)
        if root is None:
            raise SslsegError(f"{source}: not the layout of {ARCHIVE} (no {probe})")
        labels_ts = _test_labels(source, tree, root, work / "labels")
        keep_pairs(raw, {c: _locate(root, labels_ts, c) for c in cases}, root)
    return {"kind": "nifti", "sha256": digest or "not verified (local folder)", "cases": len(cases)}


DATASETS.register("word")(duomod_spec(DatasetInfo(
    "word", classes=CLASSES, tail=TAIL, dims=3, modality="CT",
    intensity="clipped to [-125, 275], (x + 125) / 400 (DuoMod-Net)", budget_unit="labelled volumes",
    budgets=(2, 5, 10)), download, label_map={16: 15}))
