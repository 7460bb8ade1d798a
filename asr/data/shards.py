"""Tar shards in NeMo's tarred-dataset layout: writing them, reading their manifest, reading them through webdataset.

Millions of loose files on network or object storage are slow to list and open; a few thousand tar files read
front to back are not. NeMo's tarred datasets are the layout most ASR users already have, so it is the one used
here, member for member, and shards written by either toolkit load in the other:

* ``audio_0.tar``, ``audio_1.tar``, ...: each audio file's bytes as they were (FLAC stays FLAC), under a flat
  member name (its file name, made unique and free of extra dots: ``KEY.flac``), plus ``KEY.json``, the
  utterance's manifest line, so a shard describes itself. NeMo's reader keeps only the audio member of each key
  (``wds.rename(audio=...)``), so the extra member does not disturb it.
* ``tarred_audio_manifest.json``: the usual JSON-lines manifest, one line per utterance, with ``audio_filepath``
  the member name and ``shard_id`` the number of its tar (NeMo's ``tarred_audio_manifest.json``), and
  ``sharded_manifests/manifest_N.json``, the same lines split by shard (NeMo's ``--shard_manifests``).

Shards are given as webdataset and NeMo give them (``tarred_audio_filepaths``): one string with brace ranges,
``DIR/audio_{0..127}.tar``, or a list; each URL a local path, ``http(s)://...`` (read through curl), or
``pipe:COMMAND`` whose standard output is the tar (``pipe:aws s3 cp s3://bucket/audio_3.tar -``). The ``N``-th
URL after brace expansion is the shard with ``shard_id`` N. Reading goes through webdataset's own tar iterator
and URL opener (``webdataset.tariterators``, ``webdataset.gopen``), the library NeMo reads them with; how the
shards are dealt to ranks and workers and batched is :mod:`asr.data.shard_stream`'s.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from asr.data.audio import AUDIO_EXTENSIONS
from asr.data.manifest import ManifestError, Utterance, _decode, parse_line, read_manifest
from asr.errors import ShardError

MANIFEST_NAME = "tarred_audio_manifest.json"  # NeMo's name for the manifest of all shards
SHARD_MANIFESTS = "sharded_manifests"  # NeMo's folder of per-shard manifests (manifest_N.json)
SHARD_PATTERN = "audio_{}.tar"
# The suffixes (after the key's first dot) that webdataset hands over as audio; the rest (.json) is metadata.
AUDIO_SUFFIXES = frozenset(e[1:] for e in AUDIO_EXTENSIONS)


def _webdataset() -> Any:
    try:
        import webdataset
    except ImportError as e:
        raise ShardError(f"reading tar shards needs webdataset: pip install 'asr-rnn-ctc[shards]' ({e})") from None
    return webdataset


def expand_urls(spec: str | Sequence[str]) -> list[str]:
    """Shard URLs from NeMo's / webdataset's notation: ``audio_{0..6}.tar`` (braceexpand), or a list of such.

    A list is expanded item by item, in order; the result's ``N``-th URL is shard ``N`` of the manifest.
    NeMo's ``_OP_`` and ``_CL_`` stand for ``{`` and ``}`` (``audio__OP_0..6_CL_.tar``).
    """
    _webdataset()
    import braceexpand  # webdataset's dependency

    items = [spec] if isinstance(spec, str) else list(spec)
    # NeMo's tags for the braces, for command lines and SLURM scripts where a shell or Hydra would take them.
    items = [str(item).strip().replace("_OP_", "{").replace("_CL_", "}") for item in items]
    urls = [u for item in items for u in braceexpand.braceexpand(item)]
    if not urls or any(not u for u in urls):
        raise ShardError(f"no shard URLs in {spec!r}; give e.g. 'DIR/audio_{{0..N}}.tar'")
    return urls


def member_key(name: str) -> str | None:
    """The sample key webdataset gives a member ``name``: everything before the first dot of its file name."""
    match = re.match(r"^((?:.*/|)[^.]+)[.]([^/]*)$", name)
    return match.group(1) if match else None


def _safe_key(path: str) -> str:
    stem = Path(path).name
    for ext in sorted(AUDIO_EXTENSIONS, key=len, reverse=True):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
            break
    return re.sub(r"[^A-Za-z0-9_\-]", "_", stem) or "utt"


@dataclass
class ShardSet:
    """What :func:`write_shards` wrote, and what it left out."""

    directory: Path
    shards: list[Path]
    manifest: Path
    utterances: int
    seconds: float
    skipped: list[str] = field(default_factory=list)

    @property
    def url_pattern(self) -> str:
        """The brace pattern naming all the shards, for ``--train-shards``."""
        return str(self.directory / SHARD_PATTERN.format("{0.." + str(len(self.shards) - 1) + "}"))


def write_shards(
    manifest: str | os.PathLike,
    out_dir: str | os.PathLike,
    shard_seconds: float,
    shuffle: bool = True,
    seed: int = 0,
    overwrite: bool = False,
) -> ShardSet:
    """Pack a manifest's audio into tar shards of about ``shard_seconds`` of audio each, with the shard manifests.

    ``shuffle`` mixes the utterances before cutting (seeded): manifests are often sorted by speaker or chapter,
    and a reader streams a shard front to back, so a sorted corpus would fill its shuffle buffer with one
    speaker. A broken manifest line or a missing audio file is left out and listed in :attr:`ShardSet.skipped`
    (named by file and line). Shards already in ``out_dir`` are an error unless ``overwrite``.
    """
    if not shard_seconds > 0:
        raise ShardError(f"--shard-seconds must be positive, got {shard_seconds}")
    out = Path(out_dir)
    existing = sorted(out.glob("audio_*.tar")) if out.is_dir() else []
    if existing and not overwrite:
        raise ShardError(
            f"{out} already holds {len(existing)} shards ({existing[0].name}, ...); --force to replace them"
        )
    errors: list[str] = []
    utts = read_manifest(manifest, strict=False, errors=errors)
    skipped = list(errors)
    usable = []
    for u in utts:
        if not os.path.isfile(u.audio_filepath):
            skipped.append(f"{u.source}: {u.audio_filepath}: file not found")
        else:
            usable.append(u)
    if not usable:
        raise ShardError(f"{manifest}: no utterance with readable audio to shard ({len(skipped)} skipped)")
    if shuffle:
        random.Random(seed).shuffle(usable)

    groups: list[list[Utterance]] = [[]]
    seconds = 0.0
    for u in usable:
        if groups[-1] and seconds + u.duration > shard_seconds:
            groups.append([])
            seconds = 0.0
        groups[-1].append(u)
        seconds += u.duration

    out.mkdir(parents=True, exist_ok=True)
    for old in existing:  # overwrite: a shorter new set must not leave old shards beyond its end
        old.unlink()
    (out / SHARD_MANIFESTS).mkdir(exist_ok=True)
    for old in (out / SHARD_MANIFESTS).glob("manifest_*.json"):
        old.unlink()
    used: dict[str, int] = {}
    lines: list[dict[str, Any]] = []
    paths = []
    for shard_id, group in enumerate(groups):
        shard_lines = []
        path = out / SHARD_PATTERN.format(shard_id)
        tmp = path.with_suffix(".tar.tmp")
        with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
            for u in group:
                key = _safe_key(u.audio_filepath)
                if key in used:  # NeMo's convention for a repeated file name
                    used[key] += 1
                    key = f"{key}-sub{used[key]}"
                used.setdefault(key, 0)
                ext = os.path.splitext(u.audio_filepath)[1].lower() or ".wav"
                member = f"{key}{ext}"
                line = {**u.to_json(), "audio_filepath": member, "shard_id": shard_id}
                _add(tar, member, Path(u.audio_filepath).read_bytes())
                _add(tar, f"{key}.json", (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8"))
                shard_lines.append(line)
        os.replace(tmp, path)
        paths.append(path)
        _write_lines(out / SHARD_MANIFESTS / f"manifest_{shard_id}.json", shard_lines)
        lines += shard_lines
    _write_lines(out / MANIFEST_NAME, lines)
    return ShardSet(out, paths, out / MANIFEST_NAME, len(lines), sum(u.duration for u in usable), skipped)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0  # no dates or owners: the same input, the same bytes
    tar.addfile(info, io.BytesIO(data))


def _write_lines(path: Path, lines: Sequence[dict[str, Any]]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def read_shard_manifest(
    path: str | os.PathLike, strict: bool = True, errors: list[str] | None = None
) -> list[Utterance]:
    """Utterances of a tarred manifest: ``audio_filepath`` stays the member name, ``extra["shard_id"]`` an int.

    ``path`` may also be a brace pattern of per-shard manifests, as NeMo's ``shard_manifests`` mode names them
    (``DIR/sharded_manifests/manifest_{0..N}.json``): they are read in order, as one manifest.
    A line without a usable ``shard_id`` or member name is a bad line like any other: raised with ``strict``,
    else appended to ``errors`` (named by file and line) and left out.
    """
    if not Path(path).is_file() and any(t in str(path) for t in ("{", "_OP_")):
        out: list[Utterance] = []
        for one in expand_urls(str(path)):
            out += read_shard_manifest(one, strict=strict, errors=errors)
        return out
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: shard manifest not found")
    out = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            try:
                line = _decode(raw, where, first=lineno == 1)
                if not line.strip():
                    continue
                u = parse_line(line, where)  # no base folder: the path is a member name, not a file
                sid = u.extra.get("shard_id")
                if isinstance(sid, bool) or not isinstance(sid, int) or sid < 0:
                    raise ManifestError(f"{where}: 'shard_id' must be the shard's number (0, 1, ...), got {sid!r}")
                if member_key(u.audio_filepath) is None:
                    raise ManifestError(
                        f"{where}: audio_filepath {u.audio_filepath!r} is no tar member name with an extension "
                        "(KEY.flac)"
                    )
                out.append(u)
            except ManifestError as e:
                if strict:
                    raise
                if errors is not None:
                    errors.append(str(e))
    return out


@dataclass
class ShardSample:
    """One key of a shard as webdataset groups it: the audio member's name and bytes."""

    key: str
    member: str
    audio: bytes


def iter_shard(url: str, on_error: Callable[[str], None]) -> Iterator[ShardSample]:
    """The audio members of one shard, in tar order, through webdataset's URL opener and tar iterator.

    A shard that cannot be opened, is cut short, or is not a tar ends early; ``on_error`` gets one line naming
    the URL and the reason, and the caller names the utterances that did not arrive. Keys without an audio
    member (only ``KEY.json``) are passed over.
    """
    wds = _webdataset()
    from webdataset.tariterators import base_plus_ext, tar_file_iterator

    stream = None
    current: ShardSample | None = None  # grouped here, not by webdataset's group_by_keys, so that the member
    # completed before a break is not lost with the one the break cut
    try:
        stream = wds.gopen(url)
        for f in tar_file_iterator(stream):
            key, suffix = base_plus_ext(f["fname"])
            if key is None:
                continue
            if current is not None and key != current.key:
                yield current
                current = None
            if suffix.lower() in AUDIO_SUFFIXES and current is None:
                current = ShardSample(key, f["fname"], f["data"])
        if current is not None:
            yield current
            current = None
    except Exception as e:  # tarfile.ReadError, OSError, a pipe's exit status: the shard ends here
        if current is not None and current.audio:
            yield current
        on_error(f"{url}: {_reason(e)}")
    finally:
        if stream is not None:
            try:
                stream.close()
            except Exception as e:  # a pipe: command that failed reports its status on close
                on_error(f"{url}: {_reason(e)}")


def _reason(e: Exception) -> str:
    text = str(e.args[0]) if e.args else type(e).__name__
    return f"{type(e).__name__}: {text.split(' @ ')[0][:200]}"
