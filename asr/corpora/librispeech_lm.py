"""LibriSpeech's official n-gram language models (OpenSLR resource 11): download and verify.

The files are the word LMs estimated on LibriSpeech's 800-million-word book text, upper case, with the
200 000-word vocabulary that ``librispeech-vocab.txt`` lists. The pruned 3-gram (34 MB gzipped) is what beam
search uses (``asr evaluate --lm 3-gram.pruned.1e-7.arpa.gz --lexicon librispeech-vocab.txt``; KenLM reads the
gzipped ARPA as it is, and the vocabulary becomes the decoder's lexicon, spelled with its own letters).
``librispeech-lexicon.txt`` maps words to *phones*; a character model has no use for it, so it is only fetched
when asked for.

OpenSLR publishes no checksums for these files, so the SHA-256 sums below are the ones RWTH's i6_experiments
pins for the same URLs (``i6_experiments/common/datasets/librispeech``; the pruned 3-gram's from a user setup in
the same repository that records the sum of the file it fetched). They could not be checked against the real
files where this was written (no network); the offline tests check the mechanism. They are checked after the download,
which itself resumes and retries like every other (:func:`asr.corpora.download.download`); a file whose sum
differs is moved aside to ``NAME.bad-sha256``. A gzipped file is also read to its end once, so a truncated
file that somehow passed is caught before KenLM spends a minute on it.

    asr librispeech-lm download [--data-dir DATA] [--files 3-gram.pruned.1e-7.arpa.gz librispeech-vocab.txt]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import zlib
from pathlib import Path
from typing import Sequence

from asr.corpora.download import ChecksumError, DownloadError, data_dir, download, file_digest, openslr_url
from asr.errors import UsageError
from asr.help_format import DefaultsHelpFormatter

RESOURCE = 11
# SHA-256 of each file, as pinned by rwth-i6/i6_experiments (None: none published that we could find).
FILES: dict[str, str | None] = {
    "3-gram.pruned.1e-7.arpa.gz": "71dd880667cb6ea3942bb1982988c91fb1208839a21911eeec7e31c857c4bdfb",
    "3-gram.pruned.3e-7.arpa.gz": None,
    "3-gram.arpa.gz": "263649573475c2991d3e755eb4e690c9d2656f2b3283a1eb589e1e4e174bf874",
    "4-gram.arpa.gz": "f2b2d1507637ddf459d3579159f7e8099ed7d77452ff1059aeeeaea33d274613",
    "librispeech-vocab.txt": "3014e72dffff09cb1a9657f31cfe2e04c1301610a6127a807d1d708b986b5474",
    "librispeech-lexicon.txt": "d722bc29908cd338ae738edd70f61826a6fca29aaa704a9493f0006773f79d71",
}
DEFAULT_FILES = ("3-gram.pruned.1e-7.arpa.gz", "librispeech-vocab.txt")
_CHUNK = 1 << 20


def lm_dir(root: str | os.PathLike) -> Path:
    return Path(root) / "LibriSpeech" / "lm"


def sha256sum(path: str | os.PathLike) -> str:
    return file_digest(path, "sha256")


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _check(path: Path, sha256: str | None, url: str) -> None:
    """Verify ``path`` once (SHA-256, then gzip integrity); a stamp keyed on size and mtime skips re-checks."""
    st = path.stat()
    key = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}
    try:
        if json.loads(_stamp(path).read_text()) == key:
            return
    except (OSError, ValueError):
        pass
    if sha256 is not None:
        actual = sha256sum(path)
        if actual != sha256:
            bad = path.with_name(path.name + ".bad-sha256")
            os.replace(path, bad)
            raise ChecksumError(
                f"{url}: SHA-256 mismatch, expected {sha256} but got {actual}; the download was "
                f"moved to {bad} (delete it, or check the mirror, then run again)"
            )
    if path.name.endswith(".gz"):
        try:
            with gzip.open(path, "rb") as f:
                while f.read(_CHUNK):
                    pass
        except (OSError, EOFError, zlib.error) as e:
            bad = path.with_name(path.name + ".bad-gzip")
            os.replace(path, bad)
            raise DownloadError(f"{url}: not a complete gzip file ({e}); moved to {bad}") from None
    _stamp(path).write_text(json.dumps(key) + "\n")


def download_librispeech_lm(
    root: str | os.PathLike,
    files: Sequence[str] = DEFAULT_FILES,
    mirror: str | None = None,
    progress: bool = True,
    checksums: dict[str, str | None] | None = None,
) -> list[Path]:
    """Fetch OpenSLR 11 ``files`` into ``<root>/LibriSpeech/lm`` (resumable), verify them, return their paths."""
    sums = FILES if checksums is None else checksums
    out = []
    for name in files:
        if name not in sums:
            raise UsageError(f"unknown OpenSLR 11 file {name!r}; choose from {', '.join(sums)}")
        url = openslr_url(RESOURCE, name, mirror)
        dest = download(url, lm_dir(root) / name, md5=None, progress=progress)
        _check(dest, sums[name], url)
        out.append(dest)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="asr librispeech-lm", description=__doc__.split("\n\n")[0], formatter_class=DefaultsHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("download", help="download and verify the LM files", formatter_class=DefaultsHelpFormatter)
    d.add_argument("--data-dir", help="default: $ASR_DATA_DIR or ./data")
    d.add_argument("--files", nargs="+", default=list(DEFAULT_FILES), choices=list(FILES), help="which files to fetch")
    d.add_argument("--mirror", help="OpenSLR mirror (default: $ASR_OPENSLR_MIRROR or www.openslr.org)")
    args = p.parse_args(argv)
    for path in download_librispeech_lm(data_dir(args.data_dir), args.files, args.mirror):
        print(path)
    return 0
