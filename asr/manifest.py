"""JSON-lines manifests (NeMo's convention): one utterance per line.

Required keys are ``audio_filepath``, ``duration`` (seconds) and ``text``; any other key (speaker, offset, ...)
is carried along untouched in :attr:`Utterance.extra`. Relative audio paths are resolved against the manifest's
folder, so a corpus directory can be moved as a whole.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

REQUIRED_KEYS = ("audio_filepath", "duration", "text")


class ManifestError(ValueError):
    """A manifest line that cannot be used; the message names the file and line."""


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
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield parse_line(line, f"{path}:{lineno}", base_dir)
            except ManifestError as e:
                if strict:
                    raise
                if errors is not None:
                    errors.append(str(e))


def read_manifest(path: str | os.PathLike, strict: bool = True, errors: list[str] | None = None) -> list[Utterance]:
    return list(iter_manifest(path, strict=strict, errors=errors))


def write_manifest(path: str | os.PathLike, utterances: Iterable[Utterance | dict[str, Any]],
                   relative_to_manifest: bool = True) -> int:
    """Write utterances as JSON lines (atomically); returns the count.

    Paths inside the manifest's folder are written relative to it, so the corpus stays relocatable.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.resolve().parent
    tmp = path.with_suffix(path.suffix + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for u in utterances:
            obj = u.to_json() if isinstance(u, Utterance) else dict(u)
            if relative_to_manifest:
                p = Path(obj["audio_filepath"])
                if p.is_absolute():
                    try:
                        obj["audio_filepath"] = str(p.resolve().relative_to(base))
                    except ValueError:
                        pass
            f.write(json.dumps(obj, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n
