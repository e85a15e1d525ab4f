"""Pancreas-NIH (TCIA Pancreas-CT, Roth et al. 2015) in the MC-Net convention (Wu et al., MICCAI 2021; repeated by
MC-Net+, Co-BioNet and DMSC): the 82 volumes preprocessed by MC-Net's notebook -- HU window [-125, 275] to [0, 1],
1 mm isotropic, cropped in-plane to the pancreas box +-25 voxels, (x, y, z) order -- as ``image00XX_norm.h5``
(``image``, ``label``), committed in the Co-BioNet repository.

Source: by default the 82 files fetched one by one from the Co-BioNet repository (``URL``), or a local folder, a zip
of it, or a ``file://`` URL of either; every file is checked against the git blob ids shipped in
``checksums/pancreas_mcnet_h5.gitsha1`` (``git hash-object``: the only checksum this release publishes) before an
earlier download is replaced. Stored in array order (z, y, x) at 1 mm.

Split: MC-Net's ``test.list`` (20) is the test split; its ``train.list`` (62) is split into train (its first 56)
and val (its last 6), because these papers select on the test set and this pipeline never does. A budget of n
labelled volumes is the first n of ``train.list`` (6 = "10 %", 12 = "20 %"), as in the papers. The convention
predates TCIA's de-duplication: ``image0025`` (test) and ``image0070`` (train) are copies of ``image0002``
(train, unlabelled), so one test volume was seen, unlabelled, in training; the papers' numbers carry that, and so
do these. BCP's own Pancreas setting (CoraNet's 80-case split, from the DICOM release) is a different data set.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sslseg import SslsegError
from sslseg.data import DATASETS, SPLIT_DIR, DatasetInfo, DatasetSpec, read_split
from sslseg.data.download import fetch, git_blob_sha1, incoming, listed_files, release_root, unpack, verify_files
from sslseg.data.prepare import write_cases, write_tables, xyz_release_case
from sslseg.io import Case, replace_folder

__all__ = ["URL", "BLOBS", "release_files", "read_release_case"]

URL = "https://raw.githubusercontent.com/himashi92/Co-BioNet/main/data/Pancreas/Pancreas_h5/{name}"
BLOBS = SPLIT_DIR.parent / "checksums" / "pancreas_mcnet_h5.gitsha1"
CLASSES = {1: "pancreas"}


def release_files() -> dict[str, str]:
    """``image00XX_norm.h5`` -> its git blob id."""
    return listed_files(BLOBS)


def download(source: str, raw: Path, sha256: str | None = None) -> dict:
    """Fetch the release into ``raw/h5``; nothing replaces an earlier download unless every file verified."""
    files = release_files()
    with incoming(raw) as work:
        if source:
            tree, digest = unpack(source, work, sha256)
            root = release_root(tree, next(iter(files)))
            if root is None:
                raise SslsegError(f"{source}: not the MC-Net pancreas h5 release (no {next(iter(files))} in it)")
        else:  # one request per file, each checked as it arrives
            digest, root = None, work / "tree"
            for name in files:
                fetch(URL.format(name=name), root / name)
        verify_files(root, files, "MC-Net pancreas h5 release", git_blob_sha1)

        def fill(tmp: Path) -> None:
            for name in files:
                shutil.copyfile(root / name, tmp / name)

        replace_folder(raw / "h5", fill)
    return {"kind": "h5", "sha256": digest or f"per-file git blob ids {BLOBS.name}"}


def read_release_case(path: Path) -> Case:
    """One ``image00XX_norm.h5`` as a Case in array order (z, y, x), 1 mm isotropic."""
    return xyz_release_case(path, "MC-Net pancreas", (1.0, 1.0, 1.0), len(CLASSES) + 1)


def preprocess(spec: DatasetSpec, raw: Path, out: Path) -> None:
    """Prepared cases from the verified release in ``raw/h5``; ``out/cases`` is replaced only when all passed."""
    if not (raw / "h5").is_dir():
        raise SslsegError(f"{raw / 'h5'}: no downloaded MC-Net pancreas release; run download first")
    rows: list[dict] = []

    def cases():
        for split in ("train", "val", "test"):
            for cid in read_split("pancreas_mcnet", split):
                c = read_release_case(raw / "h5" / f"{cid}_norm.h5")
                rows.append(dict(case=cid, patient=cid, split=split, shape=c.spatial_shape,
                                 spacing=c.geom.spacing_zyx))
                yield cid, c

    write_cases(out, cases())
    write_tables(spec, out, rows, {"source": "h5 (MC-Net, Co-BioNet copy)", "spacing_mm": [1.0, 1.0, 1.0]})


DATASETS.register("pancreas_mcnet")(DatasetSpec(DatasetInfo(
    "pancreas_mcnet", classes=CLASSES, dims=3, modality="CT",
    intensity="HU window [-125, 275] to [0, 1], cropped around the pancreas (MC-Net release)",
    budget_unit="labelled volumes", budgets=(6, 12)), download=download, preprocess=preprocess))
