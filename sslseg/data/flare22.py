"""FLARE22 (MICCAI 2022 abdominal organ challenge), the 50 labelled training CTs that are public without
registration (Zenodo 7860267, ``FLARE22Train.zip``; the 2,000 unlabelled and the tuning cases need the challenge's
sign-up), 13 organs.

Source: ``FLARE22Train.zip`` (``URL``, SHA-256 pinned), a local copy, its unpacked folder (not verifiable) or a
``file://`` URL of either; layout ``FLARE22Train/images/FLARE22_Tr_XXXX_0000.nii.gz`` and
``FLARE22Train/labels/FLARE22_Tr_XXXX.nii.gz``, kept in ``raw/cases`` (hard links where possible).

Split: DuoMod-Net publishes none; ``workflow/scripts/make_splits.py`` drew one once with a fixed seed
(train 35 / val 5 / test 10, committed); budgets 2 / 4 / 7 labelled volumes = the first n of ``train.list``.
Preparation as DuoMod-Net's (``amos``): 1.5 x 1.5 x 2.0 mm (image linear, label nearest), [-125, 275] ->
(x + 125) / 400, predictions back by nearest neighbour. DuoMod-Net's config gives FLARE22 16 output classes;
the labels hold 13 organs, so 14 here.
"""

from __future__ import annotations

from pathlib import Path

from sslseg.data import DATASETS, DatasetInfo, read_split
from sslseg.data.amos import download_pairs, duomod_spec

__all__ = ["URL", "SHA256", "CLASSES", "TAIL"]

URL = "https://zenodo.org/records/7860267/files/FLARE22Train.zip"
SHA256 = "d57e201dc9002bd4a6fc1f5e0d4525285f46bcc5be1a3c8f12543151e6675154"
CLASSES = {1: "liver", 2: "kidney_r", 3: "spleen", 4: "pancreas", 5: "aorta", 6: "ivc", 7: "adrenal_r",
           8: "adrenal_l", 9: "gallbladder", 10: "esophagus", 11: "stomach", 12: "duodenum", 13: "kidney_l"}
TAIL = (7, 8, 9, 10, 12)  # AMOS's tail organs in FLARE22's numbering


def _locate(root: Path, case: str):
    img, lab = root / "images" / f"{case}_0000.nii.gz", root / "labels" / f"{case}.nii.gz"
    return (img, lab) if img.is_file() and lab.is_file() else None


def download(source: str, raw: Path, sha256: str | None = None) -> dict:
    cases = [c for split in ("train", "val", "test") for c in read_split("flare22", split)]
    digest = download_pairs(source, raw, sha256, url=URL, official=SHA256, release="FLARE22Train.zip", cases=cases,
                            probe=f"labels/{cases[0]}.nii.gz", locate=_locate)
    return {"kind": "nifti", "sha256": digest or "not verified (local folder)", "cases": len(cases)}


DATASETS.register("flare22")(duomod_spec(DatasetInfo(
    "flare22", classes=CLASSES, tail=TAIL, dims=3, modality="CT",
    intensity="clipped to [-125, 275], (x + 125) / 400 (DuoMod-Net)", budget_unit="labelled volumes",
    budgets=(2, 4, 7)), download))
