"""Fetching and unpacking public corpora with the standard library only.

Corpus archives are large (LibriSpeech's train-other-500 is 30 GB) and servers drop connections, so a download
is written to ``DEST.part``, resumed with an HTTP Range request after an interruption, and checked against the
published MD5 before it takes its final name. A file that fails the check is moved aside, never reused.
Once verified, the checksum is remembered in a small sidecar (``DEST.md5``) so later runs do not re-hash
gigabytes just to learn that nothing changed. Two processes fetching the same file (two recipes started at once)
take turns on a lock file (``DEST.lock``), so they never write into the same ``.part``; the second one then finds
the file done.
"""

from __future__ import annotations

import copy
import hashlib
import http.client
import json
import os
import socket
import sys
import tarfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from asr.errors import ChecksumError, DownloadError  # noqa: F401  (re-exported: raised here, caught as asr.ASRError)

try:
    import fcntl
except ImportError:  # Windows: an exclusive create stands in for the lock (see _exclusive)
    fcntl = None  # type: ignore[assignment]

DATA_DIR_ENV = "ASR_DATA_DIR"
DEFAULT_DATA_DIR = "data"
OPENSLR_MIRROR_ENV = "ASR_OPENSLR_MIRROR"
# Other mirrors that carry the same files: https://us.openslr.org/resources, https://openslr.elda.org/resources
DEFAULT_OPENSLR_MIRROR = "https://www.openslr.org/resources"

_CHUNK = 1 << 20
_USER_AGENT = "asr-download/0.1 (+https://github.com/; python-urllib)"


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """Where corpora live: the explicit ``override``, else ``$ASR_DATA_DIR``, else ``./data``."""
    return Path(override or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def openslr_url(resource: int, filename: str, mirror: str | None = None) -> str:
    """URL of ``filename`` in OpenSLR resource ``resource``, from ``mirror``, else ``$ASR_OPENSLR_MIRROR``."""
    base = (mirror or os.environ.get(OPENSLR_MIRROR_ENV) or DEFAULT_OPENSLR_MIRROR).rstrip("/")
    return f"{base}/{resource}/{filename}"


def file_digest(path: str | os.PathLike, algorithm: str = "md5", chunk_size: int = _CHUNK) -> str:
    """Hex digest of a file read in chunks (archives are too large to read at once)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def md5sum(path: str | os.PathLike, chunk_size: int = _CHUNK) -> str:
    return file_digest(path, "md5", chunk_size)


def _sidecar(dest: Path) -> Path:
    return dest.with_name(dest.name + ".md5")


def _stat_key(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _remember_md5(dest: Path, md5: str) -> None:
    _sidecar(dest).write_text(json.dumps({"md5": md5, **_stat_key(dest)}) + "\n")


def _remembered_md5(dest: Path) -> str | None:
    """The cached MD5, valid only while the file's size and mtime are those it was computed for."""
    try:
        cached = json.loads(_sidecar(dest).read_text())
        if {k: cached[k] for k in ("size", "mtime_ns")} == _stat_key(dest):
            return str(cached["md5"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def verified(dest: str | os.PathLike, md5: str | None) -> bool:
    """True if ``dest`` exists and (when ``md5`` is given) has that checksum; uses the sidecar cache."""
    dest = Path(dest)
    if not dest.is_file():
        return False
    if md5 is None:
        return True
    actual = _remembered_md5(dest)
    if actual is None:
        actual = md5sum(dest)
        _remember_md5(dest, actual)
    return actual == md5.lower()


def _move_aside(path: Path, final: Path) -> Path:
    bad = final.with_name(final.name + ".bad-md5")
    os.replace(path, bad)
    return bad


class _Progress:
    """One status line on stderr, redrawn at most every ``interval`` seconds (every 30 s when not a terminal)."""

    def __init__(self, name: str, total: int | None, done: int, enabled: bool):
        self.name, self.total, self.done = name, total, done
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.interval = 0.5 if self.tty else 30.0
        self.start = self.last = time.monotonic()
        self.start_bytes = done

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and now - self.last >= self.interval:
            self.last = now
            self._draw(now, end="\r" if self.tty else "\n")

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic(), end="\n")

    def _draw(self, now: float, end: str) -> None:
        rate = (self.done - self.start_bytes) / max(now - self.start, 1e-6)
        line = f"{self.name}: {_human(self.done)}"
        if self.total:
            line += f" / {_human(self.total)} ({100.0 * self.done / self.total:5.1f}%)"
            if rate > 0:
                line += f", ETA {_duration((self.total - self.done) / rate)}"
        line += f", {_human(rate)}/s"
        print(line.ljust(78), end=end, file=sys.stderr, flush=True)


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _duration(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _open(url: str, start: int, timeout: float) -> tuple[http.client.HTTPResponse | None, int, int | None]:
    """Request ``url`` from byte ``start``; returns (response, offset the body starts at, total size if known).

    A server may ignore the Range header (200: the body starts at 0) or answer 416 when ``start`` is already the
    whole file; the response is then None and the offset equals the total size.
    """
    headers = {"User-Agent": _USER_AGENT}
    if start > 0:
        headers["Range"] = f"bytes={start}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start > 0:
            total = _content_range_total(e.headers.get("Content-Range"))
            e.close()
            if total == start:
                return None, start, total
            # The partial file is longer than (or unrelated to) the remote one: start over.
            return _open(url, 0, timeout)
        raise
    if resp.status == 206:
        content_range = resp.headers.get("Content-Range", "")
        try:
            offset = int(content_range.split()[1].split("-")[0])
        except (IndexError, ValueError):
            resp.close()
            raise DownloadError(f"{url}: malformed Content-Range {content_range!r}") from None
        return resp, offset, _content_range_total(content_range)
    length = resp.headers.get("Content-Length")
    return resp, 0, int(length) if length and length.isdigit() else None


def _content_range_total(value: str | None) -> int | None:
    if value and "/" in value:
        total = value.rsplit("/", 1)[1].strip()
        if total.isdigit():
            return int(total)
    return None


def _hash_prefix(path: Path, nbytes: int) -> "hashlib._Hash":
    h = hashlib.md5()
    with open(path, "rb") as f:
        left = nbytes
        while left > 0 and (chunk := f.read(min(_CHUNK, left))):
            h.update(chunk)
            left -= len(chunk)
    return h


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
    """Download ``url`` to ``dest`` and return ``dest``.

    * A ``dest`` that already has the right MD5 is kept as is (the check is cached, see the module docstring).
      One with a wrong MD5 is moved to ``DEST.bad-md5`` and fetched again.
    * Bytes go to ``DEST.part``; with ``resume`` an existing part is continued with a Range request, and a
      connection that breaks mid-way is retried from where it stopped, with back-off; ``retries`` counts failures
      in a row, so a long download over a flaky link goes on as long as each try brings bytes.
    * Another process downloading the same ``dest`` holds ``DEST.lock``: this call waits for it (at most
      ``lock_timeout`` seconds, None = as long as it takes), then finds its result.
    * A finished download whose MD5 differs from ``md5`` is moved to ``DEST.bad-md5`` and
      :class:`ChecksumError` is raised naming the URL and both checksums.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(dest.with_name(dest.name + ".lock"), f"downloading {dest.name}", lock_timeout):
        return _download_locked(url, dest, md5.lower() if md5 else None, resume, progress, retries, timeout)


def _download_locked(
    url: str, dest: Path, md5: str | None, resume: bool, progress: bool, retries: int, timeout: float
) -> Path:
    if dest.is_file():
        if verified(dest, md5):
            return dest
        bad = _move_aside(dest, dest)
        _sidecar(dest).unlink(missing_ok=True)
        print(f"{dest}: checksum is not {md5}; moved to {bad} and downloading again", file=sys.stderr)

    part = dest.with_name(dest.name + ".part")
    if not resume:
        part.unlink(missing_ok=True)
    attempt = 0
    while True:
        had = _size(part)
        try:
            digest = _fetch_into(url, part, dest.name, progress, timeout)
            break
        except (
            urllib.error.URLError,
            http.client.HTTPException,
            ConnectionError,
            socket.timeout,
            TimeoutError,
            _Truncated,
        ) as e:
            if isinstance(e, urllib.error.HTTPError) and e.code < 500 and e.code != 429:
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
            if _size(part) > had:  # this try brought bytes: the link works, only the failures in a row count
                attempt = 0
            attempt += 1
            if attempt > retries:
                raise DownloadError(
                    f"{url}: giving up after {retries} retries ({_reason(e)}); "
                    f"the partial file {part} is kept and the next run resumes it"
                ) from None
            wait = min(2.0**attempt, 60.0) if not isinstance(e, _Truncated) else 0.5
            print(f"{url}: {_reason(e)}; retrying in {wait:.0f} s ({attempt}/{retries})", file=sys.stderr)
            time.sleep(wait)

    if md5 is not None and digest != md5:
        bad = _move_aside(part, dest)
        raise ChecksumError(
            f"{url}: MD5 mismatch, expected {md5} but got {digest}; the download was moved to "
            f"{bad} (delete it, or check the mirror, then run again)"
        )
    os.replace(part, dest)
    _remember_md5(dest, digest)
    return dest


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


@contextmanager
def _exclusive(lock: Path, what: str, timeout: float | None = None) -> Iterator[None]:
    """Hold ``lock`` (an advisory lock the OS drops when the holder dies) while ``what`` runs.

    Another holder is waited for, saying so once on stderr; after ``timeout`` seconds :class:`DownloadError`
    names the lock and its holder's process id instead.
    """
    lock.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover - Windows
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            raise DownloadError(
                f"{lock}: another process is {what}; wait for it, or delete the lock file if none is running"
            ) from None
        try:
            yield
        finally:
            os.close(fd)
            lock.unlink(missing_ok=True)
        return
    with open(lock, "a+") as f:
        deadline = None if timeout is None else time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | (fcntl.LOCK_NB if deadline is not None or not told else 0))
                break
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "?"
                if deadline is not None and time.monotonic() >= deadline:
                    raise DownloadError(
                        f"{lock}: another process (pid {holder}) is {what}; gave up waiting after {timeout:g} s"
                    ) from None
                if not told:
                    print(f"{lock}: another process (pid {holder}) is {what}; waiting for it", file=sys.stderr)
                    told = True
                elif deadline is not None:
                    time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        try:
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class _Truncated(Exception):
    """The connection ended before the announced size; resumable."""


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError):
        return f"connection failed ({e.reason})"
    return str(e) or type(e).__name__


def _fetch_into(url: str, part: Path, name: str, progress: bool, timeout: float) -> str:
    """Bring ``part`` up to the full remote file (resuming from its current size); returns its MD5."""
    have = part.stat().st_size if part.exists() else 0
    resp, offset, total = _open(url, have, timeout)
    if offset == 0:  # the server ignored the Range header, or the part was unusable: start over
        have = 0
    elif offset != have:
        if resp is not None:
            resp.close()
        raise DownloadError(f"{url}: asked for bytes from {have}, the server sent them from {offset}")
    h = _hash_prefix(part, have) if have else hashlib.md5()
    if resp is None:
        return h.hexdigest()
    bar = _Progress(name, total, have, progress)
    with resp, open(part, "r+b" if have else "wb") as f:
        f.seek(have)
        f.truncate()
        while chunk := resp.read(_CHUNK):
            f.write(chunk)
            h.update(chunk)
            bar.update(len(chunk))
    bar.close()
    size = part.stat().st_size
    if total is not None and size < total:
        raise _Truncated(f"connection closed after {size} of {total} bytes")
    return h.hexdigest()


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
