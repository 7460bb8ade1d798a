"""JSON-lines manifests (NeMo's convention): one utterance per line.

Required keys are ``audio_filepath``, ``duration`` (seconds) and ``text``; any other key (speaker, offset, ...)
is carried along untouched in :attr:`Utterance.extra`.

The path contract, the same whichever folder a program runs from:

* in a manifest *file*, a relative ``audio_filepath`` is relative to the manifest's own folder, so a corpus
  directory can be moved as a whole;
* in memory (an :class:`Utterance`, or a dict handed to :func:`write_manifest`), a path is what ``open()`` takes:
  absolute, or relative to the current folder. :func:`read_manifest` and :func:`write_manifest` translate.

Files are UTF-8; a byte-order mark (as some Windows editors write) is accepted, and a line that is not UTF-8 is a
bad line like any other, named by file and line.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from asr.errors import ManifestError  # noqa: F401  (re-exported: raised here, caught as asr.ASRError)

REQUIRED_KEYS = ("audio_filepath", "duration", "text")


@dataclass
class Utterance:
    audio_filepath: str
    duration: float
    text: str
    extra: dict[str, Any] = field(default_factory=dict)
    # Where the utterance came from, so every later error can point back at it.
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"audio_filepath": self.audio_filepath, "duration": self.duration, "text": self.text, **self.extra}


def parse_line(line: str, where: str, base_dir: Path | None = None) -> Utterance:
    """Parse one manifest line; ``where`` ("file:line") is put in every error message."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise ManifestError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise ManifestError(f"{where}: missing key(s) {', '.join(missing)}")
    path = obj.pop("audio_filepath")
    if not isinstance(path, str) or not path:
        raise ManifestError(f"{where}: 'audio_filepath' must be a non-empty string")
    try:
        duration = float(obj.pop("duration"))
    except (TypeError, ValueError):
        raise ManifestError(f"{where}: 'duration' must be a number of seconds") from None
    if not math.isfinite(duration) or duration < 0:
        raise ManifestError(f"{where}: 'duration' must be a non-negative number, got {duration}")
    text = obj.pop("text")
    if not isinstance(text, str):
        raise ManifestError(f"{where}: 'text' must be a string")
    if base_dir is not None and not os.path.isabs(path):
        path = str(base_dir / path)
    return Utterance(path, duration, text, obj, where)


def iter_manifest(path: str | os.PathLike, strict: bool = True, errors: list[str] | None = None) -> Iterator[Utterance]:
    """Yield utterances of a manifest.

    With ``strict`` a bad line raises :class:`ManifestError`; otherwise its message is appended to ``errors``
    and reading goes on, so that a long job can report every bad line at once instead of dying on the first.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    base_dir = path.resolve().parent
    # Bytes, decoded line by line: one stray byte must cost one line, not the whole file.
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            try:
                line = _decode(raw, where, first=lineno == 1)
                if not line.strip():
                    continue
                yield parse_line(line, where, base_dir)
            except ManifestError as e:
                if strict:
                    raise
                if errors is not None:
                    errors.append(str(e))


def _decode(raw: bytes, where: str, first: bool) -> str:
    try:
        return raw.decode("utf-8-sig" if first else "utf-8")
    except UnicodeDecodeError as e:
        raise ManifestError(
            f"{where}: not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); save the manifest as UTF-8"
        ) from None


def read_manifest(path: str | os.PathLike, strict: bool = True, errors: list[str] | None = None) -> list[Utterance]:
    return list(iter_manifest(path, strict=strict, errors=errors))


def manifest_path(audio: str | os.PathLike, manifest_dir: str | os.PathLike) -> str:
    """How ``audio`` (absolute, or relative to the current folder) is written in a manifest in ``manifest_dir``.

    Relative to the manifest's folder when the file lies inside it (the corpus stays relocatable), else absolute.
    Inside is first judged on the paths as given, so a symlinked corpus folder keeps its links; ``..`` or a
    link out of the manifest's folder are judged on the resolved paths, because that is how the reader will
    follow them.
    """
    p, d = Path(audio).absolute(), Path(manifest_dir).absolute()
    if ".." not in p.parts and ".." not in d.parts and p.is_relative_to(d):
        return p.relative_to(d).as_posix()
    rp, rd = p.resolve(), d.resolve()
    if rp.is_relative_to(rd):
        return rp.relative_to(rd).as_posix()
    return str(rp if ".." in p.parts else p)


def write_manifest(
    path: str | os.PathLike, utterances: Iterable[Utterance | dict[str, Any]], relative_to_manifest: bool = True
) -> int:
    """Write utterances as JSON lines (atomically); returns the count.

    Audio paths are taken as ``open()`` takes them (absolute, or relative to the current folder) and written
    so that :func:`read_manifest` finds the same files from the manifest's folder: relative to it when inside
    it (see :func:`manifest_path`), else absolute; ``relative_to_manifest=False`` writes every path absolute.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    n = 0
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for u in utterances:
                obj = u.to_json() if isinstance(u, Utterance) else dict(u)
                audio = obj["audio_filepath"]
                obj["audio_filepath"] = (
                    manifest_path(audio, path.parent) if relative_to_manifest else str(Path(audio).absolute())
                )
                line = json.dumps(obj, ensure_ascii=False) + "\n"
                try:
                    line.encode("utf-8")
                except UnicodeEncodeError:  # a file name read from the disk with bytes that are not UTF-8
                    shown = os.fsencode(audio).decode("utf-8", errors="backslashreplace")
                    why = "file name is not UTF-8; a manifest is UTF-8 JSON: rename it"
                    raise ManifestError(f"{shown}: {why}") from None
                f.write(line)
                n += 1
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # nothing half-written left beside the manifest
        raise
    return n
