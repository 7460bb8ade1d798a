"""Fetching and unpacking public corpora with the standard library only.

The download itself (``DEST.part``, resumed with HTTP Range requests, checked against the published MD5 before it
takes its final name, a file that fails moved aside as ``DEST.bad-md5``, a remembered checksum, a lock between
two processes) is :mod:`asr.data.fetch`, which model downloads share; this module adds where corpora live, the
OpenSLR mirrors, and a safe extraction of their archives.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import tarfile
import time  # noqa: F401  (tests pause the retries through it)
from pathlib import Path

from asr.data import fetch
from asr.data.fetch import _exclusive, file_digest, verified  # noqa: F401  (re-exported)
from asr.errors import ChecksumError, DownloadError  # noqa: F401  (re-exported: raised here, caught as asr.ASRError)

DATA_DIR_ENV = "ASR_DATA_DIR"
DEFAULT_DATA_DIR = "data"
OPENSLR_MIRROR_ENV = "ASR_OPENSLR_MIRROR"
# Other mirrors that carry the same files: https://us.openslr.org/resources, https://openslr.elda.org/resources
DEFAULT_OPENSLR_MIRROR = "https://www.openslr.org/resources"


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """Where corpora live: the explicit ``override``, else ``$ASR_DATA_DIR``, else ``./data``."""
    return Path(override or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def openslr_url(resource: int, filename: str, mirror: str | None = None) -> str:
    """URL of ``filename`` in OpenSLR resource ``resource``, from ``mirror``, else ``$ASR_OPENSLR_MIRROR``."""
    base = (mirror or os.environ.get(OPENSLR_MIRROR_ENV) or DEFAULT_OPENSLR_MIRROR).rstrip("/")
    return f"{base}/{resource}/{filename}"


def md5sum(path: str | os.PathLike, chunk_size: int = fetch._CHUNK) -> str:
    return file_digest(path, "md5", chunk_size)


def download(
    url: str,
    dest: str | os.PathLike,
    md5: str | None = None,
    resume: bool = True,
    progress: bool = True,
    retries: int = 5,
    timeout: float = 60.0,
    lock_timeout: float | None = None,
) -> Path:
    """Download a corpus file, checked against its published MD5: :func:`asr.data.fetch.download`, which says how
    it resumes, retries, locks and moves a bad file aside (``DEST.bad-md5``)."""
    return fetch.download(
        url,
        dest,
        md5,
        "md5",
        resume=resume,
        progress=progress,
        retries=retries,
        timeout=timeout,
        lock_timeout=lock_timeout,
    )


def _marker(archive: Path, dest_dir: Path) -> Path:
    return dest_dir / f".{archive.name}.extracted"


def extract(archive: str | os.PathLike, dest_dir: str | os.PathLike) -> Path:
    """Unpack a .tar/.tar.gz into ``dest_dir`` once; returns ``dest_dir``.

    A marker file records a finished extraction so that a rerun is a no-op; an interrupted one (no marker) is
    redone from the start. Members that would land outside ``dest_dir`` (absolute paths, ``..``, links pointing
    out, devices) are refused, because archives are fetched from mirrors we do not control.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    marker = _marker(archive, dest_dir)
    stamp = {"archive": archive.name, "size": archive.stat().st_size}
    if _extracted(marker, stamp):
        return dest_dir
    dest_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(dest_dir / f".{archive.name}.lock", f"extracting {archive.name}"):
        if not _extracted(marker, stamp):  # another process may have finished it while we waited
            _extract_checked(archive, dest_dir)
            marker.write_text(json.dumps(stamp) + "\n")
    return dest_dir


def _extracted(marker: Path, stamp: dict) -> bool:
    try:
        return json.loads(marker.read_text()) == stamp
    except (OSError, ValueError):
        return False


def _extract_checked(archive: Path, dest_dir: Path) -> None:
    root = dest_dir.resolve()
    print(f"extracting {archive} into {dest_dir}", file=sys.stderr)
    # Python's own "data" filter where it exists (3.10.12+, 3.11.4+, 3.12+); our checks run either way.
    has_filter = hasattr(tarfile, "data_filter")
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                _check_member(member, root, archive)
                if has_filter:
                    tar.extract(member, dest_dir, filter="data")
                else:
                    tar.extract(_as_plain_data(member), dest_dir)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DownloadError(
            f"{archive}: cannot extract ({e}); fix the cause and run again, the extraction starts over"
        ) from None


def _as_plain_data(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """What the "data" filter leaves of a checked member: no owner, no set-id or sticky bits, no write for others."""
    member = copy.copy(member)
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    if member.isfile() or member.isdir():
        member.mode = (member.mode & 0o755) | (0o600 if member.isfile() else 0o700)
    return member


def _check_member(member: tarfile.TarInfo, root: Path, archive: Path) -> None:
    target = (root / member.name).resolve()
    if os.path.isabs(member.name) or not target.is_relative_to(root):
        raise DownloadError(f"{archive}: refusing member {member.name!r} outside the destination")
    if member.issym() or member.islnk():
        link = (target.parent / member.linkname) if member.issym() else (root / member.linkname)
        if os.path.isabs(member.linkname) or not link.resolve().is_relative_to(root):
            raise DownloadError(f"{archive}: refusing link {member.name!r} -> {member.linkname!r}")
    elif not (member.isfile() or member.isdir()):
        raise DownloadError(f"{archive}: refusing special member {member.name!r}")
