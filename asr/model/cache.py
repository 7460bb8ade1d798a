"""Models fetched by name or URL into a local cache: what ``asr.load_model("NAME" | "https://..." | "hf://...")``
and ``asr models download`` do.

* **Where:** ``$ASR_CACHE_DIR`` if set, else the platform's user cache folder (platformdirs: ``~/.cache/asr`` on
  Linux, ``~/Library/Caches/asr`` on macOS, ``%LOCALAPPDATA%\\asr\\Cache`` on Windows). A URL's file lives in
  ``models/<16 hex digits of the URL's SHA-256>/<its file name>``, so two URLs never share a file and the name
  stays the one the publisher gave it.
* **Checked:** bytes are hashed with SHA-256 while they stream in (:mod:`asr.data.fetch`) and take the final name
  by an atomic rename only when they match the registry's or ``--sha256``'s digest; a mismatch is kept aside as
  ``FILE.bad-sha256`` and is an error. A URL given without a digest is fetched and its digest printed, so it can
  be pinned from then on. A cut download is resumed (HTTP Range) by the next try or the next run.
* **Offline:** ``ASR_OFFLINE=1`` forbids any download: a cached file is used (and still checked), anything else
  is an error that says what is missing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.parse
from pathlib import Path

from asr.data import fetch
from asr.errors import DownloadError, UsageError
from asr.model.registry import SHA256_PATTERN, is_model_name, lookup

log = logging.getLogger(__name__)

CACHE_ENV = "ASR_CACHE_DIR"
OFFLINE_ENV = "ASR_OFFLINE"


def cache_dir() -> Path:
    """Where fetched models are kept: ``$ASR_CACHE_DIR``, else the platform's user cache folder for asr."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("asr", appauthor=False))


def offline() -> bool:
    """True when ``$ASR_OFFLINE`` forbids downloads (any value but empty, 0, false, no, off)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def is_remote(source: str) -> bool:
    """True for what :func:`fetch_model` resolves: a URL (http, https, file, hf) or a registry name."""
    return "://" in source or is_model_name(source)


def cached_path(url: str) -> Path:
    """The cache file of ``url`` (whether or not it is there yet)."""
    name = os.path.basename(urllib.parse.urlparse(url).path) or "model.pt"
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return cache_dir() / "models" / key / name


def fetch_model(
    source: str,
    sha256: str | None = None,
    *,
    progress: bool = False,
    timeout: float = 60.0,
    retries: int = 5,
) -> Path:
    """The local path of the model ``source`` names (a registry name, an http(s):// or file:// URL, or
    ``hf://org/repo[/file]``), downloading it into the cache unless it is there already.

    ``sha256``: the digest the file must have (a registry name brings its own; giving another is an error).
    ``timeout``: seconds without a byte before a try counts as failed; ``retries`` failures in a row end it.
    """
    if sha256 is not None and not SHA256_PATTERN.match(sha256.lower()):
        raise UsageError(f"--sha256 {sha256!r}: expected 64 hex digits")
    want = sha256.lower() if sha256 else None
    url = source
    if "://" not in source:
        if not is_model_name(source):
            raise UsageError(f"{source}: not a model file, a registry name or a URL (http, https, file, hf)")
        entry = lookup(source)
        if want and entry.sha256 and want != entry.sha256:
            raise UsageError(f"{source}: --sha256 {want} differs from the registry's {entry.sha256} ({entry.source})")
        url, want = entry.url, want or entry.sha256
    scheme = url.split("://", 1)[0].lower()
    if scheme == "hf":
        from asr.model.hub import hub_download

        return hub_download(url, sha256=want, cache=cache_dir(), offline=offline())
    if scheme not in ("http", "https", "file"):
        raise UsageError(f"{url}: unsupported URL scheme {scheme!r} (http, https, file or hf)")
    dest = cached_path(url)
    if offline():
        if dest.is_file() and fetch.verified(dest, want, "sha256"):
            return dest
        why = "is not in the cache" if not dest.is_file() else "is in the cache with another SHA-256"
        raise DownloadError(f"{source}: {why} ({dest}) and {OFFLINE_ENV}=1 forbids downloading it")
    if dest.is_file() and want is None:
        log.info("%s: using the cached %s", source, dest)
        return dest
    fetch.download(url, dest, want, "sha256", progress=progress, timeout=timeout, retries=retries)
    if want is None:
        digest = fetch.remembered_digest(dest, "sha256")
        log.warning("%s: fetched without a checksum to check; its SHA-256 is %s (pass --sha256 to pin it)", url, digest)
    return dest
