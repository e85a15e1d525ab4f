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

from sslseg import SslsegError
from sslseg.data import DATASETS, DatasetInfo, DatasetSpec, read_split
from sslseg.data.amos import SPACING, link_or_copy
from sslseg.data.download import incoming, release_root, unpack
from sslseg.io import replace_folder

__all__ = ["URL", "SHA256", "CLASSES", "TAIL"]

URL = "https://zenodo.org/records/7860267/files/FLARE22Train.zip"
SHA256 = "d57e201dc9002bd4a6fc1f5e0d4525285f46bcc5be1a3c8f12543151e6675154"
CLASSES = {1: "liver", 2: "kidney_r", 3: "spleen", 4: "pancreas", 5: "aorta", 6: "ivc", 7: "adrenal_r",
           8: "adrenal_l", 9: "gallbladder", 10: "esophagus", 11: "stomach", 12: "duodenum", 13: "kidney_l"}
TAIL = (7, 8, 9, 10, 12)  # AMOS's tail organs in FLARE22's numbering


def download(source: str, raw: Path, sha256: str | None = None) -> dict:
    cases = [c for split in ("train", "val", "test") for c in read_split("flare22", split)]
    with incoming(raw) as work:
        tree, digest = unpack(source or URL, work, None)
        if digest is not None and digest != (sha256 or SHA256).lower():
            raise SslsegError(f"{source or URL}: sha256 mismatch (expected {sha256 or SHA256}, got {digest}); not "
                              "the official FLARE22Train.zip (give its sha256 under sources: to use another copy)")
        root = release_root(tree, f"labels/{cases[0]}.nii.gz")
        if root is None:
            raise SslsegError(f"{source or URL}: not the FLARE22Train layout (images/, labels/)")
        pairs = {c: (root / "images" / f"{c}_0000.nii.gz", root / "labels" / f"{c}.nii.gz") for c in cases}
        if missing := [c for c, (i, lab) in pairs.items() if not (i.is_file() and lab.is_file())]:
            raise SslsegError(f"{root}: no image and label for {missing[0]} ({len(missing)} of {len(cases)} missing)")

        def fill(tmp: Path) -> None:
            for c, (img, lab) in pairs.items():
                link_or_copy(img, tmp / "imagesTr" / f"{c}_0000.nii.gz")
                link_or_copy(lab, tmp / "labelsTr" / f"{c}.nii.gz")

        replace_folder(raw / "cases", fill)
    return {"kind": "nifti", "sha256": digest or "not verified (local folder)", "cases": len(cases)}


def preprocess(spec: DatasetSpec, raw: Path, out: Path) -> None:
    from sslseg.data.prepare import prepare_nifti

    if not (raw / "cases").is_dir():
        raise SslsegError(f"{raw / 'cases'}: no downloaded FLARE22; run download first")
    prepare_nifti(spec, raw / "cases", out)


def _spec() -> DatasetSpec:
    from sslseg.data.prepare import ct_window

    return DatasetSpec(DatasetInfo(
        "flare22", classes=CLASSES, tail=TAIL, dims=3, modality="CT",
        intensity="clipped to [-125, 275], (x + 125) / 400 (DuoMod-Net)", budget_unit="labelled volumes",
        budgets=(2, 4, 7), mirror=False, restore_order=0),
        download=download, preprocess=preprocess, normalise=ct_window(-125, 275), target_spacing=SPACING,
        resample=(1, 0), preparation={"resampling": "image linear, label nearest; back to the original grid nearest"})


DATASETS.register("flare22")(_spec())
