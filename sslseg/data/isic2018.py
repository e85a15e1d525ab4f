"""ISIC 2018 Task 1, skin-lesion segmentation (Codella et al. 2019; Tschandl et al. 2018), RGB dermoscopy, one class,
as DEC-Seg uses it.

Source: the challenge's official zips on S3 (``BASE_URL``, each SHA-256 pinned): the training and validation inputs
and ground truths, fetched when no source is given; or a folder (or ``file://`` URL) holding those zips (checked)
or their unpacked folders (not verifiable). Layout: ``ISIC2018_Task1-2_Training_Input/ISIC_<id>.jpg`` and
``ISIC2018_Task1_Training_GroundTruth/ISIC_<id>_segmentation.png`` (0 / 255), likewise for Validation.

Split: DEC-Seg's lists are not published; its labelled counts (207 and 622 = 10 and 30 % of 2,075) say it
re-split the 2,594 training images 80 / 20, so ``workflow/scripts/make_splits.py`` drew that re-split once with a
fixed seed (train 2,075, test 519); the 100 images of the official validation set validate. Budgets 207 / 622 =
the first n of ``train.list``.

Preparation as DEC-Seg's loader sees an image: zoomed to the training size, 352 x 352, with scipy's ``zoom(order=0)``
(image and mask), RGB / 255; the photographs (up to 6,700 pixels wide) are not stored at full size. The original
mask is kept, and predictions go back to the original size the same way (DEC-Seg's ``MyTest.py``).
"""

from __future__ import annotations

from pathlib import Path

from sslseg import SslsegError
from sslseg.data import DATASETS, DatasetInfo, DatasetSpec, read_split
from sslseg.data.download import check_digest, incoming, keep_files, local_path, unpack
from sslseg.data.prepare import prepare_downloaded_images, rgb_unit

__all__ = ["BASE_URL", "ZIPS", "SIZE"]

BASE_URL = "https://isic-challenge-data.s3.amazonaws.com/2018/"
# the four official zips the split reads, with their SHA-256
ZIPS = {
    "ISIC2018_Task1-2_Training_Input.zip": "80f98572347a2d7a376227fa9eb2e4f7459d317cb619865b8b9910c81446675f",
    "ISIC2018_Task1_Training_GroundTruth.zip": "99f8b2bb3c4d6af483362010715f7e7d5d122d9f6c02cac0e0d15bef77c7604c",
    "ISIC2018_Task1-2_Validation_Input.zip": "0ea920fcfe512d12a6e620b50b50233c059f67b10146e1479c82be58ff15a797",
    "ISIC2018_Task1_Validation_GroundTruth.zip": "f6911e9c0a64e6d687dd3ca466ca927dd5e82145cb2163b7a1e5b37d7a716285",
}
SIZE = (352, 352)  # DEC-Seg's training size


def _release(source: str, name: str, work: Path) -> tuple[Path, str]:
    """The folder of one release (``name`` without .zip) and how it was verified: unpacked in the source folder,
    or its zip there (checked), or fetched (checked) from the source URL's folder or else S3."""
    folder, local = name[:-len(".zip")], local_path(source) if source else None
    if local is not None and (local / folder).is_dir():
        return local / folder, "not verified (unpacked folder)"
    if local is not None and not (local / name).is_file():
        raise SslsegError(f"{local}: neither {name} nor its folder {folder}/ is here")
    origin = str(local / name) if local is not None else (source.rstrip("/") + "/" if source else BASE_URL) + name
    tree, digest = unpack(origin, work / folder, None)
    check_digest(origin, digest, ZIPS[name], name)
    found = next((p for p in [tree / folder, *tree.rglob(folder)] if p.is_dir()), tree)
    return found, digest


def download(source: str, raw: Path, sha256: str | None = None) -> dict:
    """The split's images and masks into ``raw/files/{images,masks}``."""
    if source and (local := local_path(source)) is not None and not local.is_dir():
        raise SslsegError(f"{source}: isic2018 reads a folder (or a URL of one) with the official zips or their "
                          "folders, or nothing (then they are fetched from the challenge's S3 bucket)")
    facts = {"kind": "images"}
    with incoming(raw) as work:
        folders = {}
        for name in ZIPS:
            folders[name], facts[name] = _release(source, name, work)
        files = {}
        for split in ("train", "val", "test"):
            part = "Validation" if split == "val" else "Training"
            images, truth = (folders[f"ISIC2018_Task1-2_{part}_Input.zip"],
                             folders[f"ISIC2018_Task1_{part}_GroundTruth.zip"])
            for cid in read_split("isic2018", split):
                img, mask = images / f"{cid}.jpg", truth / f"{cid}_segmentation.png"
                if not (img.is_file() and mask.is_file()):
                    raise SslsegError(f"{img if not img.is_file() else mask}: missing from ISIC 2018's "
                                      f"{part.lower()} set")
                files[f"images/{cid}.jpg"], files[f"masks/{cid}.png"] = img, mask
        keep_files(raw / "files", files)
    return {**facts, "images": len(files) // 2}


DATASETS.register("isic2018")(DatasetSpec(DatasetInfo(
    "isic2018", classes={1: "lesion"}, dims=2, modality="RGB dermoscopy", intensity="RGB / 255",
    budget_unit="labelled images", budgets=(207, 622), in_channels=3, channel_names=("R", "G", "B"),
    spacing_known=False, restore_order=0), download=download, preprocess=prepare_downloaded_images,
    normalise=rgb_unit, image_size=SIZE,
    preparation={"masks": "foreground where the value >= 128", "stored": "352 x 352, zoom order 0"}))
