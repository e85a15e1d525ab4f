"""AMOS22 (Ji et al., NeurIPS 2022), abdominal multi-organ CT and MRI, in the class-imbalanced SSL convention of DHC
(Wang & Li, MICCAI 2023) that DuoMod-Net, SKCDF and TAK-Semi reuse.

Source: Zenodo's ``amos22.zip`` (``URL``, SHA-256 pinned), a local copy of it, an unpacked folder (not verifiable)
or a ``file://`` URL of either; its nnU-Net layout ``amos22/{imagesTr,labelsTr,imagesVa,labelsVa}/amos_XXXX.nii.gz``.
The download keeps the 360 cases of the split lists in ``raw/cases/{imagesTr,labelsTr}`` (hard links where the
file system allows, so the 24 GB are not copied twice).

Cases: ids below 500 are CT, 500 and above MRI (``modality`` in cases.csv). DHC's lists mix both: train 216
(182 CT + 34 MRI) and val ("eval") 24 (18 + 6) from ``imagesTr``, test 120 = ``imagesVa`` (100 + 20); labelled
subsets 2 % = 4 (CT), 5 % = 10 (7 CT + 3 MRI), 10 % = 21 (16 + 5), shipped as ``labelled_{4,10,21}.list``. DHC's
20 % lists are not shipped: they hold 20 cases of the eval list (see the split notes). The ``amos`` benchmark
uses all of them, CT and MRI, as DHC and DuoMod-Net do.

Preparation as DuoMod-Net's ``preprocess/preprocess.py`` and loader: resampled to 1.5 x 1.5 x 2.0 mm (x, y, z;
image linear, label nearest), clipped to [-125, 275] and mapped by (x + 125) / 400 -- the CT window is applied to
the MRI cases too, as the papers do. Predictions go back to each case's original grid by nearest-neighbour
resizing, as its ``test_amos.py`` (zoom, order 0).
"""

from __future__ import annotations

from pathlib import Path

from sslseg import SslsegError
from sslseg.data import DATASETS, DatasetInfo, DatasetSpec, read_split
from sslseg.data.download import check_digest, incoming, keep_files, release_root, unpack

__all__ = ["URL", "SHA256", "CLASSES", "TAIL", "modality", "download_pairs", "keep_pairs", "duomod_spec"]

URL = "https://zenodo.org/records/7155725/files/amos22.zip"
SHA256 = "d2fbf2c31abba9824d183f05741ce187b17905b8cca64d1078eabf1ba96775c2"
CLASSES = {1: "spleen", 2: "kidney_r", 3: "kidney_l", 4: "gallbladder", 5: "esophagus", 6: "liver", 7: "stomach",
           8: "aorta", 9: "ivc", 10: "pancreas", 11: "adrenal_r", 12: "adrenal_l", 13: "duodenum", 14: "bladder",
           15: "prostate_uterus"}
TAIL = (4, 5, 11, 12, 13)  # DuoMod-Net's tail classes: gallbladder, esophagus, the adrenal glands, duodenum
SPACING = (1.5, 1.5, 2.0)


def modality(case: str) -> dict:
    """AMOS numbers its MRI scans from 500."""
    return {"modality": "MRI" if int(case.rsplit("_", 1)[1]) >= 500 else "CT"}


def download_pairs(source: str, raw: Path, sha256: str | None, *, url: str, official: str, release: str,
                   cases: list[str], probe: str, locate) -> str | None:
    """Unpack ``source`` (default ``url``; an archive must have ``sha256`` or else the ``official`` digest), find
    the release's root by the relative path ``probe``, every case's (image, label) by ``locate(root, case)`` (None
    when absent) and keep them (``keep_pairs``). Returns the archive's digest (None: a folder)."""
    with incoming(raw) as work:
        tree, digest = unpack(source or url, work, None)
        check_digest(source or url, digest, sha256 or official, release)
        root = release_root(tree, probe)
        if root is None:
            raise SslsegError(f"{source or url}: not the layout of {release} (no {probe})")
        keep_pairs(raw, {c: locate(root, c) for c in cases}, root)
    return digest


def keep_pairs(raw: Path, found: dict, root: Path) -> None:
    """Keep every case's (image, label) of ``found`` (case -> pair, None when absent from the release at ``root``)
    as ``raw/cases/{imagesTr/{case}_0000, labelsTr/{case}}.nii.gz`` (``keep_files``)."""
    if missing := [c for c, pair in found.items() if pair is None]:
        raise SslsegError(f"{root}: no image and label for {missing[0]} ({len(missing)} of the {len(found)} "
                          "cases of the split missing)")
    keep_files(raw / "cases", {name: path for c, (img, lab) in found.items()
                               for name, path in ((f"imagesTr/{c}_0000.nii.gz", img), (f"labelsTr/{c}.nii.gz", lab))})


def preprocess(spec: DatasetSpec, raw: Path, out: Path) -> None:
    """The kept cases (``download_pairs``) prepared by the shared NIfTI path (``spec``'s resampling and window)."""
    from sslseg.data.prepare import prepare_nifti

    if not (raw / "cases").is_dir():
        raise SslsegError(f"{raw / 'cases'}: no downloaded {spec.name}; run download first")
    prepare_nifti(spec, raw / "cases", out)


def duomod_spec(info: DatasetInfo, download, **kw) -> DatasetSpec:
    """DuoMod-Net's preparation of a CT release (AMOS, FLARE22): 1.5 x 1.5 x 2 mm with linear images and nearest
    labels, the window [-125, 275] -> (x + 125) / 400, predictions back by nearest neighbour."""
    from sslseg.data.prepare import ct_window

    return DatasetSpec(info.replace(mirror=False, restore_order=0), download=download, preprocess=preprocess,
                       normalise=ct_window(-125, 275), target_spacing=SPACING, resample=(1, 0),
                       preparation={"resampling": "image linear, label nearest; back to the original grid nearest"},
                       **kw)


def _locate(root: Path, case: str):
    for part in ("Tr", "Va"):
        img, lab = root / f"images{part}" / f"{case}.nii.gz", root / f"labels{part}" / f"{case}.nii.gz"
        if img.is_file() and lab.is_file():
            return img, lab
    return None


def download(source: str, raw: Path, sha256: str | None = None) -> dict:
    """The split's 360 cases from ``imagesTr``/``labelsTr`` and ``imagesVa``/``labelsVa``."""
    cases = [c for split in ("train", "val", "test") for c in read_split("amos", split)]
    digest = download_pairs(source, raw, sha256, url=URL, official=SHA256, release="amos22.zip", cases=cases,
                            probe=f"imagesTr/{cases[0]}.nii.gz", locate=_locate)
    mri = sum(modality(c)["modality"] == "MRI" for c in cases)
    return {"kind": "nifti", "sha256": digest or "not verified (local folder)", "cases": len(cases), "mri_cases": mri}


DATASETS.register("amos")(duomod_spec(DatasetInfo(
    "amos", classes=CLASSES, tail=TAIL, dims=3, modality="CT and MRI (ids from 500)",
    intensity="clipped to [-125, 275], (x + 125) / 400, MRI included (DuoMod-Net)",
    budget_unit="labelled volumes", budgets=(4, 10, 21)), download, case_columns=modality))
