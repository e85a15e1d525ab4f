"""Colonoscopy polyps in PraNet's split (Fan et al., MICCAI 2020), as DEC-Seg trains and tests on them: ``polyp``,
and its Kvasir-SEG part alone, ``kvasir``. RGB frames, one class.

``polyp``: PraNet's 1,450 training frames (900 of Kvasir-SEG, 550 of CVC-ClinicDB) and its five test sets, scored
separately and together: Kvasir (100), CVC-ClinicDB (62), CVC-300 (60), CVC-ColonDB (380), ETIS-LaribPolypDB (196).
Source (no default: PraNet's archives are on Google Drive only): a folder -- or a zip of it, or a ``file://`` URL
-- holding PraNet's ``TrainDataset`` and ``TestDataset`` (``{images,masks}/<name>.png``, the test sets in
``TestDataset/<set>/``), unpacked or as ``TrainDataset.zip`` / ``TestDataset.zip`` (no published checksum: not
verified), and optionally Kvasir-SEG's official ``kvasir-seg.zip`` (SHA-256 pinned) or its ``Kvasir-SEG`` folder:
where present, the Kvasir frames are taken from it (``Kvasir-SEG/{images,masks}/<id>.jpg``) instead of PraNet's
copies. PraNet names ClinicDB, CVC-300, ColonDB and ETIS frames by number and Kvasir frames by their Kvasir-SEG id;
here a case id carries its set: ``clinicdb_12``, ``kvasir_cju0qkwl35piu0993l0dewei2``, ``cvc300_149``,
``colondb_7``, ``etis_3`` (cases.csv's ``subset`` column names the set).

``kvasir``: Kvasir-SEG's official ``kvasir-seg.zip`` (``KVASIR_URL``, SHA-256 pinned; or a local copy, its folder,
a ``file://`` URL), PraNet's 100 Kvasir test frames as its test set and the other 900 for training.

Splits (``workflow/scripts/make_splits.py``): PraNet's test sets; PraNet has no validation set, so 50 of its 1,450
training frames (30 of the 900 for ``kvasir``), drawn once with a fixed seed, validate; DEC-Seg's budgets 145 / 435
labelled frames (``kvasir``: 87 / 261, 10 / 30 %) are the first n of ``train.list``. Frames are stored at their
own size, RGB / 255 (DEC-Seg's scaling); masks (PNG, or Kvasir-SEG's JPEG with its compression noise) are
foreground where the channel mean is >= 128, DEC-Seg's ``label / 255 > 0.5`` (Kvasir-SEG's own ResUNet++ code
divides by 255 and keeps the soft values; PraNet's MATLAB toolbox takes ``> 128``: the three differ only at 128). The ``decseg`` protocol zooms each
frame to the training size and the prediction back (order 0), as DEC-Seg's test script.
"""

from __future__ import annotations

from pathlib import Path

from sslseg import SslsegError
from sslseg.data import DATASETS, DatasetInfo, DatasetSpec, read_split
from sslseg.data.download import check_digest, incoming, keep_files, release_root, unpack
from sslseg.data.prepare import prepare_downloaded_images, rgb_unit

__all__ = ["KVASIR_URL", "KVASIR_SHA256", "KVASIR_ZIP", "SUBSETS", "subset"]

KVASIR_URL = "https://datasets.simula.no/downloads/kvasir-seg.zip"
KVASIR_SHA256 = "03b30e21d584e04facf49397a2576738fd626815771afbbf788f74a7153478f7"
KVASIR_ZIP = "kvasir-seg.zip"
# case id prefix -> PraNet's folder name of the set
SUBSETS = {"kvasir": "Kvasir", "clinicdb": "CVC-ClinicDB", "cvc300": "CVC-300", "colondb": "CVC-ColonDB",
           "etis": "ETIS-LaribPolypDB"}
IMAGE_EXT = (".png", ".jpg", ".jpeg", ".tif", ".bmp")


def subset(case: str) -> dict:
    """The set a case belongs to (PraNet's test set, or the training frame's source)."""
    return {"subset": SUBSETS[case.split("_", 1)[0]]}


def _pairs(images: Path, masks: Path, case_of) -> dict[str, tuple[Path, Path]]:
    """(image, mask) per case id of the frames in ``images`` that have a mask of the same stem in ``masks``."""
    found = {}
    if not images.is_dir() or not masks.is_dir():
        return found
    mask_by_stem = {p.stem: p for p in masks.iterdir() if p.suffix.lower() in IMAGE_EXT}
    for p in images.iterdir():
        if p.suffix.lower() in IMAGE_EXT and p.stem in mask_by_stem:
            found[case_of(p.stem)] = (p, mask_by_stem[p.stem])
    return found


def _pranet(tree: Path) -> dict[str, tuple[Path, Path]]:
    """The frames of PraNet's TrainDataset and TestDataset found under ``tree``."""
    found = {}
    for train in (p for p in tree.rglob("TrainDataset") if p.is_dir()):
        found.update(_pairs(train / "images", train / "masks",
                            lambda s: f"clinicdb_{s}" if s.isdigit() else f"kvasir_{s}"))
    for test in (p for p in tree.rglob("TestDataset") if p.is_dir()):
        for prefix, name in SUBSETS.items():
            found.update(_pairs(test / name / "images", test / name / "masks", lambda s, p=prefix: f"{p}_{s}"))
    return found


def _kvasir_seg(tree: Path) -> dict[str, tuple[Path, Path]]:
    """The frames of Kvasir-SEG (``Kvasir-SEG/{images,masks}/<id>.jpg``) found under ``tree``."""
    found = {}
    for top in (p for p in tree.rglob("Kvasir-SEG") if p.is_dir()):
        found.update(_pairs(top / "images", top / "masks", lambda s: f"kvasir_{s}"))
    return found


def _archives(tree: Path, work: Path) -> list[tuple[Path, str | None]]:
    """The source's own tree and every archive of the releases inside it, unpacked (with its SHA-256)."""
    out = [(tree, None)]
    for i, z in enumerate(sorted(p for name in ("TrainDataset.zip", "TestDataset.zip", KVASIR_ZIP)
                                 for p in tree.rglob(name))):
        sub, digest = unpack(str(z), work / f"inner{i}", None)
        if z.name == KVASIR_ZIP:
            check_digest(str(z), digest, KVASIR_SHA256, KVASIR_ZIP)
        out.append((sub, digest))
    return out


def _keep(raw: Path, name: str, found: dict[str, tuple[Path, Path]], where: str) -> None:
    cases = [c for split in ("train", "val", "test") for c in read_split(name, split)]
    if missing := [c for c in cases if c not in found]:
        raise SslsegError(f"{where}: no image and mask for {missing[0]} ({len(missing)} of the {len(cases)} frames "
                          f"of {name}'s split missing)")
    keep_files(raw / "files", {f"{kind}/{c}{path.suffix.lower()}": path for c in cases
                               for kind, path in zip(("images", "masks"), found[c])})


def download_polyp(source: str, raw: Path, sha256: str | None = None) -> dict:
    """PraNet's frames (and Kvasir-SEG's, where given) of the split into ``raw/files/{images,masks}``."""
    if not source:
        raise SslsegError("polyp: PraNet's TrainDataset.zip and TestDataset.zip are on Google Drive only (see "
                          "PraNet's README); set sources: {polyp: <a folder with them, and optionally "
                          f"{KVASIR_ZIP}>}}")
    with incoming(raw) as work:
        tree, digest = unpack(source, work / "source", sha256)
        found, kvasir_from = {}, "PraNet's copies"
        trees = _archives(tree, work)
        for sub, _ in trees:
            found.update(_pranet(sub))
        for sub, d in trees:
            if official := _kvasir_seg(sub):
                found.update(official)  # Kvasir-SEG's own frames replace PraNet's copies
                kvasir_from = f"{KVASIR_ZIP} (sha256 {d})" if d else "a Kvasir-SEG folder (not verified)"
        _keep(raw, "polyp", found, source)
    return {"kind": "images", "sha256": digest or "not verified (local folder)", "kvasir_frames": kvasir_from,
            "frames": len(found)}


def download_kvasir(source: str, raw: Path, sha256: str | None = None) -> dict:
    """Kvasir-SEG's frames of the split into ``raw/files/{images,masks}``."""
    with incoming(raw) as work:
        tree, digest = unpack(source or KVASIR_URL, work / "source", None)
        check_digest(source or KVASIR_URL, digest, sha256 or KVASIR_SHA256, KVASIR_ZIP)
        found = _kvasir_seg(tree)
        if not found:
            raise SslsegError(f"{source or KVASIR_URL}: not the layout of {KVASIR_ZIP} (no Kvasir-SEG/images and "
                              "masks)")
        _keep(raw, "kvasir", found, source or KVASIR_URL)
    return {"kind": "images", "sha256": digest or "not verified (local folder)", "frames": len(found)}


def _register(name: str, download, budgets: tuple[int, int], note: str) -> None:
    DATASETS.register(name)(DatasetSpec(DatasetInfo(
        name, classes={1: "polyp"}, dims=2, modality=f"RGB colonoscopy ({note})", intensity="RGB / 255",
        budget_unit="labelled images", budgets=budgets, in_channels=3, channel_names=("R", "G", "B"),
        spacing_known=False), download=download, preprocess=prepare_downloaded_images, normalise=rgb_unit,
        case_columns=subset, preparation={"masks": "foreground where the channel mean >= 128"}))


_register("polyp", download_polyp, (145, 435), "PraNet's split of Kvasir-SEG, CVC-ClinicDB, CVC-300, CVC-ColonDB, "
          "ETIS-LaribPolypDB")
_register("kvasir", download_kvasir, (87, 261), "Kvasir-SEG, PraNet's test frames")
