"""Fetching raw data: https/file:// URLs or local files and directories, sha256 checks, safe extraction."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tarfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import Iterator

from sslseg import SslsegError
from sslseg.io import atomic_path, replace_folder

__all__ = ["sha256sum", "git_blob_sha1", "local_path", "fetch", "extract", "unpack", "listed_files", "release_root",
           "verify_files", "check_digest", "link_or_copy", "keep_files"]


def sha256sum(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def git_blob_sha1(path: Path) -> str:
    """The git blob id of a file (``git hash-object``): SHA-1 of ``blob <size>\\0`` + its bytes -- the only
    checksum some releases committed to git publish."""
    h = hashlib.sha1()
    h.update(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def listed_files(path: Path) -> dict[str, str]:
    """A release's shipped checksum list (``digest [size] name`` per line, ``#`` comments): name -> digest."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            digest, *_, name = line.split()
            out[name] = digest
    return out


def release_root(tree: Path, name: str) -> Path | None:
    """The folder at or under ``tree`` that holds ``name`` (a release's file path, e.g. ``<case>/mri_norm2.h5``),
    or None."""
    if (tree / name).is_file():
        return tree
    depth = len(Path(name).parts)
    for p in sorted(tree.rglob(Path(name).name)):
        if p.parts[-depth:] == Path(name).parts:
            return Path(*p.parts[:-depth])
    return None


def verify_files(root: Path, files: dict[str, str], release: str, digest=sha256sum) -> None:
    """Every ``name -> expected digest`` of a release present under ``root`` with that digest, else SslsegError
    naming the first file that is missing or differs."""
    for name, expected in files.items():
        path = root / name
        if not path.is_file():
            raise SslsegError(f"{path}: missing from the {release}")
        if (got := digest(path)) != expected:
            raise SslsegError(f"{path}: {digest.__name__.replace('sum', '')} mismatch (expected {expected}, got "
                              f"{got}); corrupt or modified file")


def local_path(source: str) -> Path | None:
    """The path of a local source (a plain path or a ``file://`` URL); None for a remote URL."""
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.path))
    if parsed.scheme == "":
        return Path(source)
    return None


def fetch(source: str, dest: Path, sha256: str | None = None) -> Path:
    """Copy or download ``source`` to ``dest`` (a file) and verify its sha256 when given.

    A local directory is returned as is (nothing to copy). A checksum mismatch removes nothing already
    present at ``dest`` and raises SslsegError naming both digests.
    """
    local = local_path(source)
    if local is not None:
        if not local.exists():
            raise SslsegError(f"{local}: source does not exist")
        if local.is_dir():
            return local
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        if local is not None:
            shutil.copyfile(local, tmp)
        else:
            try:
                with urllib.request.urlopen(source, timeout=60) as r, open(tmp, "wb") as f:
                    shutil.copyfileobj(r, f)
            except OSError as e:
                raise SslsegError(f"{source}: download failed ({e}); pass a local copy as the source") from None
        if sha256:
            got = sha256sum(tmp)
            if got != sha256.lower():
                raise SslsegError(f"{source}: sha256 mismatch (expected {sha256}, got {got})")
    return dest


def extract(archive: Path, dest: Path, name: str | None = None, password: str | None = None) -> Path:
    """Extract a zip or tar archive into ``dest``, refusing members that would land outside it; messages name
    the archive as ``name`` (the user's source) when given. A zip with a ``password`` may be AES-encrypted (WinZip
    AE-1/AE-2, which Python's zipfile cannot read) or ZipCrypto: both are read with pyzipper."""
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    archive_path, archive = archive, name or archive

    def check(name: str) -> None:
        target = (root / name).resolve()
        if root != target and root not in target.parents:
            raise SslsegError(f"{archive}: member {name!r} would be written outside the extraction folder")

    try:
        if zipfile.is_zipfile(archive_path):
            with _open_zip(archive_path, password) as z:
                for info in z.infolist():
                    check(info.filename)
                    if stat.S_ISLNK(info.external_attr >> 16):
                        raise SslsegError(f"{archive}: member {info.filename!r} is a link; refusing to extract")
                z.extractall(dest)
        elif tarfile.is_tarfile(archive_path):
            with tarfile.open(archive_path) as t:
                for m in t.getmembers():
                    check(m.name)
                    if m.issym() or m.islnk():
                        raise SslsegError(f"{archive}: member {m.name!r} is a link; refusing to extract")
                t.extractall(dest, filter="data")
        else:
            raise SslsegError(f"{archive}: not a zip or tar archive")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as e:
        raise SslsegError(f"{archive}: corrupt or truncated archive ({e})") from None
    except RuntimeError as e:  # zipfile and pyzipper: an encrypted member without, or with a wrong, password
        raise SslsegError(f"{archive}: could not be decrypted ({e})") from None
    except NotImplementedError as e:  # e.g. an AES-encrypted member read without its password
        raise SslsegError(f"{archive}: could not be read ({e}; encrypted?)") from None
    except OSError as e:  # e.g. a member path through a file: name the archive, not the temporary folder
        raise SslsegError(f"{archive}: could not be extracted ({e.strerror or e})") from None
    return dest


def _open_zip(path: Path, password: str | None):
    if password is None:
        return zipfile.ZipFile(path)
    import pyzipper

    z = pyzipper.AESZipFile(path)
    z.setpassword(password.encode())
    return z


@contextlib.contextmanager
def incoming(raw: Path) -> Iterator[Path]:
    """The work folder ``raw/.incoming`` of a download in progress, removed however the download ends."""
    work, created = raw / ".incoming", not raw.exists()
    raw.mkdir(parents=True, exist_ok=True)
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if created and not any(raw.iterdir()):  # a failed first download leaves no empty folder
            raw.rmdir()


def unpack(source: str, work: Path, sha256: str | None = None,
           password: str | None = None) -> tuple[Path, str | None]:
    """The file tree of ``source`` and its archive's SHA-256: a local directory as it is (digest None), otherwise
    the file or URL fetched into ``work`` (checked against ``sha256`` when given) and extracted there (with
    ``password`` for an encrypted zip). ``work`` is emptied first; the caller removes it once it has copied what it
    needs."""
    shutil.rmtree(work, ignore_errors=True)
    local = local_path(source)
    if local is not None and local.is_dir():
        return local, None
    archive = fetch(source, work / "archive", sha256)
    return extract(archive, work / "tree", source, password), sha256sum(archive)


def check_digest(source: str, digest: str | None, expected: str, release: str) -> None:
    """An archive's SHA-256 is the pinned one (a folder, ``digest`` None, is not verifiable)."""
    if digest is not None and digest != expected.lower():
        raise SslsegError(f"{source}: sha256 mismatch (expected {expected}, got {digest}); not the official "
                          f"{release} (give its sha256 under sources: to use another copy)")


def link_or_copy(src: Path, dest: Path) -> None:
    """A hard link to ``src`` at ``dest`` (same file system), else a copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def keep_files(folder: Path, files: dict[str, Path]) -> None:
    """``files`` (relative name -> source file) in ``folder``, hard links where the file system allows (a release
    of many GB is not copied twice); an earlier download in ``folder`` stays until every file is in place."""
    def fill(tmp: Path) -> None:
        for name, src in files.items():
            link_or_copy(src, tmp / name)

    replace_folder(folder, fill)
