"""Brain MRI: the LGG segmentation set of Buda et al. (Comput. Biol. Med. 2019; Kaggle
``mateuszbuda/lgg-mri-segmentation``): FLAIR-abnormality masks on 3,929 axial slices of 110 TCGA lower-grade-glioma
patients, 256 x 256, three channels (pre-contrast, FLAIR, post-contrast) as one RGB TIFF, one class.

Which set DEC-Seg's "BrainMRI" is, its code does not say (its data lists and h5 files are not published); this one
fits everything it does say -- brain glioma, three input channels, 256 x 256 test size -- and its training pool
(1,030 = 75 % of this set's 1,373 slices with tumour). It cannot be pinned as an archive: Kaggle (login required)
publishes no checksum. Every file the split uses is checked instead against the SHA-256 list shipped in
``sslseg/data/checksums/brainmri_kaggle_3m.sha256`` (computed from two identical public copies of the archive).

Source (no default: Kaggle needs a login): the Kaggle archive (a zip), its unpacked folder, or a ``file://`` URL;
layout ``kaggle_3m/<patient>/<patient>_<k>.tif`` and ``<patient>_<k>_mask.tif`` (the archive holds the tree twice,
``kaggle_3m/`` and ``lgg-mri-segmentation/kaggle_3m/``: either is read).

Split (``workflow/scripts/make_splits.py``): the slices with tumour (a slice without tumour scores Dice 0 under
DEC-Seg's test rule whatever the prediction, so DEC-Seg's set cannot have held them), whole patients drawn once
with a fixed seed into test (275 slices), val (73) and train (1,025); budgets 103 / 310 (DEC-Seg's) = the first n
of ``train.list``. Stored at 256 x 256, RGB / 255, masks foreground where >= 128.
"""

from __future__ import annotations

from pathlib import Path

from sslseg import SslsegError
from sslseg.data import DATASETS, DatasetInfo, DatasetSpec, read_split
from sslseg.data.download import incoming, keep_files, listed_files, release_root, unpack, verify_files
from sslseg.data.prepare import prepare_downloaded_images, rgb_unit

__all__ = ["CHECKSUMS", "RELEASE"]

CHECKSUMS = Path(__file__).parent / "checksums" / "brainmri_kaggle_3m.sha256"
RELEASE = "LGG MRI segmentation set (kaggle_3m)"


def _paths(case: str) -> tuple[str, str]:
    patient = case.rsplit("_", 1)[0]
    return f"kaggle_3m/{patient}/{case}.tif", f"kaggle_3m/{patient}/{case}_mask.tif"


def download(source: str, raw: Path, sha256: str | None = None) -> dict:
    """The split's slices, each file checked against the shipped list, into ``raw/files/{images,masks}``."""
    if not source:
        raise SslsegError("brainmri: the LGG MRI segmentation set is on Kaggle (mateuszbuda/lgg-mri-segmentation, "
                          "login required); download it and set sources: {brainmri: <the zip or its folder>}")
    cases = [c for split in ("train", "val", "test") for c in read_split("brainmri", split)]
    with incoming(raw) as work:
        tree, digest = unpack(source, work / "source", sha256)
        first = _paths(cases[0])[0]
        root = release_root(tree, first)
        if root is None:
            raise SslsegError(f"{source}: not the layout of the {RELEASE} (no {first})")
        expected = listed_files(CHECKSUMS)
        verify_files(root, {name: expected[name] for c in cases for name in _paths(c)}, RELEASE)
        keep_files(raw / "files", {f"{kind}/{c}.tif": root / name for c in cases
                                   for kind, name in zip(("images", "masks"), _paths(c))})
    return {"kind": "images", "archive_sha256": digest or "not verified (local folder)",
            "files": f"{2 * len(cases)} checked against {CHECKSUMS.name}", "slices": len(cases)}


DATASETS.register("brainmri")(DatasetSpec(DatasetInfo(
    "brainmri", classes={1: "abnormality"}, dims=2, modality="MRI (pre-contrast, FLAIR, post-contrast as RGB)",
    intensity="RGB / 255", budget_unit="labelled slices", budgets=(103, 310), in_channels=3,
    channel_names=("pre-contrast", "FLAIR", "post-contrast"), spacing_known=False), download=download,
    preprocess=prepare_downloaded_images, normalise=rgb_unit,
    preparation={"masks": "foreground where the value >= 128"}))
