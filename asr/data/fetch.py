"""Fetching one file over HTTP(S) or from a ``file://`` URL, checked against a published checksum, with the
standard library only: the machinery that corpus downloads (:mod:`asr.corpora.download`) and model downloads
(:mod:`asr.model.cache`) share, so it sits low, beside the other data plumbing.

Files are large (LibriSpeech's train-other-500 is 30 GB) and servers drop connections, so a download is written
to ``DEST.part``, hashed while it streams, resumed with an HTTP Range request after an interruption, and checked
against the published digest (MD5 for OpenSLR, SHA-256 for models) before it takes its final name by an atomic
rename. A file that fails the check is moved aside (``DEST.bad-md5``, ``DEST.bad-sha256``), never reused. Once
verified, the checksum is remembered in a small sidecar (``DEST.md5``, ``DEST.sha256``) so later runs do not
re-hash gigabytes just to learn that nothing changed. Two processes fetching the same file take turns on a lock
file (``DEST.lock``), so they never write into the same ``.part``; the second one then finds the file done.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import sys
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

_CHUNK = 1 << 20
_USER_AGENT = "asr-download/0.1 (+https://github.com/; python-urllib)"


def file_digest(path: str | os.PathLike, algorithm: str = "md5", chunk_size: int = _CHUNK) -> str:
    """Hex digest of a file read in chunks (archives are too large to read at once)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def _sidecar(dest: Path, algorithm: str = "md5") -> Path:
    return dest.with_name(f"{dest.name}.{algorithm}")


def _stat_key(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _remember(dest: Path, digest: str, algorithm: str) -> None:
    _sidecar(dest, algorithm).write_text(json.dumps({algorithm: digest, **_stat_key(dest)}) + "\n")


def remembered_digest(dest: Path, algorithm: str) -> str | None:
    """The cached digest, valid only while the file's size and mtime are those it was computed for."""
    try:
        cached = json.loads(_sidecar(dest, algorithm).read_text())
        if {k: cached[k] for k in ("size", "mtime_ns")} == _stat_key(dest):
            return str(cached[algorithm])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def verified(dest: str | os.PathLike, digest: str | None, algorithm: str = "md5") -> bool:
    """True if ``dest`` exists and (when ``digest`` is given) has that checksum; uses the sidecar cache."""
    dest = Path(dest)
    if not dest.is_file():
        return False
    if digest is None:
        return True
    actual = remembered_digest(dest, algorithm)
    if actual is None:
        actual = file_digest(dest, algorithm)
        _remember(dest, actual, algorithm)
    return actual == digest.lower()


def _move_aside(path: Path, final: Path, algorithm: str) -> Path:
    bad = final.with_name(f"{final.name}.bad-{algorithm}")
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


def _hash_prefix(path: Path, nbytes: int, algorithm: str) -> "hashlib._Hash":
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        left = nbytes
        while left > 0 and (chunk := f.read(min(_CHUNK, left))):
            h.update(chunk)
            left -= len(chunk)
    return h


def download(
    url: str,
    dest: str | os.PathLike,
    checksum: str | None = None,
    algorithm: str = "md5",
    resume: bool = True,
    progress: bool = True,
    retries: int = 5,
    timeout: float = 60.0,
    lock_timeout: float | None = None,
) -> Path:
    """Download ``url`` (http, https or file) to ``dest`` and return ``dest``.

    * A ``dest`` that already has the right ``checksum`` (hex digest of ``algorithm``: md5 for corpora, sha256
      for models) is kept as is (the check is cached, see the module docstring). One with a wrong checksum is
      moved to ``DEST.bad-ALGORITHM`` and fetched again.
    * Bytes go to ``DEST.part``, hashed as they arrive (a finished download is never read again to check it);
      with ``resume`` an existing part is continued with a Range request, and a connection that breaks mid-way
      is retried from where it stopped, with back-off; ``retries`` counts failures in a row, so a long download
      over a flaky link goes on as long as each try brings bytes. A server that sends nothing for ``timeout``
      seconds counts as such a failure.
    * Another process downloading the same ``dest`` holds ``DEST.lock``: this call waits for it (at most
      ``lock_timeout`` seconds, None = as long as it takes), then finds its result.
    * A finished download whose checksum differs is moved to ``DEST.bad-ALGORITHM`` and :class:`ChecksumError`
      is raised naming the URL and both checksums. Only then, or when it checks out, does ``DEST`` exist: the
      part file takes its final name by an atomic rename.
    """
    if algorithm not in hashlib.algorithms_available:
        raise ValueError(f"unknown checksum algorithm {algorithm!r}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(dest.with_name(dest.name + ".lock"), f"downloading {dest.name}", lock_timeout):
        expected = checksum.lower() if checksum else None
        return _download_locked(url, dest, expected, algorithm, resume, progress, retries, timeout)


def _download_locked(
    url: str,
    dest: Path,
    checksum: str | None,
    algorithm: str,
    resume: bool,
    progress: bool,
    retries: int,
    timeout: float,
) -> Path:
    if dest.is_file():
        if verified(dest, checksum, algorithm):
            return dest
        bad = _move_aside(dest, dest, algorithm)
        _sidecar(dest, algorithm).unlink(missing_ok=True)
        print(f"{dest}: checksum is not {checksum}; moved to {bad} and downloading again", file=sys.stderr)

    part = dest.with_name(dest.name + ".part")
    if not resume:
        part.unlink(missing_ok=True)
    attempt = 0
    while True:
        had = _size(part)
        try:
            digest = _fetch_into(url, part, dest.name, progress, timeout, algorithm)
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
            if _is_local(url) and not isinstance(e, _Truncated):
                raise DownloadError(f"{url}: cannot read ({_reason(e)})") from None
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

    if checksum is not None and digest != checksum:
        bad = _move_aside(part, dest, algorithm)
        raise ChecksumError(
            f"{url}: {algorithm.upper()} mismatch, expected {checksum} but got {digest}; the download was moved "
            f"to {bad} (delete it, or check the source, then run again)"
        )
    os.replace(part, dest)
    _remember(dest, digest, algorithm)
    return dest


def _is_local(url: str) -> bool:
    return url.lower().startswith("file:")


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
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "the server sent nothing within the timeout (stalled)"
    if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError):
        if isinstance(e.reason, (socket.timeout, TimeoutError)):
            return "the server did not answer within the timeout"
        return f"connection failed ({e.reason})"
    return str(e) or type(e).__name__


def _fetch_into(url: str, part: Path, name: str, progress: bool, timeout: float, algorithm: str = "md5") -> str:
    """Bring ``part`` up to the full remote file (resuming from its current size); returns its digest."""
    have = part.stat().st_size if part.exists() else 0
    resp, offset, total = _open(url, have, timeout)
    if offset == 0:  # the server ignored the Range header, or the part was unusable: start over
        have = 0
    elif offset != have:
        if resp is not None:
            resp.close()
        raise DownloadError(f"{url}: asked for bytes from {have}, the server sent them from {offset}")
    h = _hash_prefix(part, have, algorithm) if have else hashlib.new(algorithm)
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
