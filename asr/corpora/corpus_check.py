"""Bring your own data: turn a folder, a LibriSpeech-style tree or a CSV/TSV into a manifest that is known good.

Three layouts are understood (``--layout auto`` picks one):

* ``folder``: audio files anywhere below a folder, each with a same-named ``.txt`` transcript (``a/b.wav`` +
  ``a/b.txt``).
* ``librispeech``: ``*.trans.txt`` files whose lines are ``<utterance-id> <text>``, next to ``<utterance-id>.flac``
  (or another audio extension).
* ``table``: a CSV or TSV with a path column and a text column; a header row is optional (without one, the first
  two columns are path and text); relative paths are relative to the table's folder.

Every audio file is opened (header only, in parallel) and every transcript is checked against the alphabet before
anything is written, because a bad file found hours into training costs far more than a minute of checking now.
Rejected entries go to a rejects file with their reason, and the manifest lists only files that passed.

    asr manifest my_corpus/ --output my_corpus/train.jsonl
"""

from __future__ import annotations

import argparse
import csv
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asr.corpora.inventory import probe_headers, read_trans_txt
from asr.data.audio import AudioError, AudioInfo, display_path
from asr.data.manifest import Utterance, write_manifest
from asr.data.tokenizer import DEFAULT_ALPHABET, CharTokenizer, normalize_text
from asr.errors import CorpusError  # noqa: F401  (re-exported: raised here, caught as asr.ASRError)
from asr.help_format import DefaultsHelpFormatter

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif", ".au", ".sph")
LAYOUTS = ("auto", "folder", "librispeech", "table")
_PATH_COLUMNS = ("audio_filepath", "audio_path", "audio", "path", "filepath", "file", "filename", "wav", "file_name")
_TEXT_COLUMNS = ("text", "transcript", "transcription", "sentence", "normalized_text", "label")

# Rejection reasons, fixed strings so that the summary can group by them.
MISSING = "missing file"
EMPTY = "empty file"
UNREADABLE = "unreadable audio"
NO_SAMPLES = "zero duration"
TOO_LONG = "too long"
LOW_RATE = "sample rate too low"
NO_TRANSCRIPT = "no transcript"
EMPTY_TEXT = "empty transcript"
OOV = "out-of-vocabulary characters"
DUPLICATE = "duplicate audio path"
NOT_UTF8_NAME = "file name not UTF-8"


@dataclass
class Candidate:
    """One entry as found in the source, before any check; ``origin`` says where (e.g. ``list.csv:12``)."""

    path: str
    text: str | None
    origin: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Rejection:
    path: str
    reason: str
    detail: str
    origin: str


@dataclass
class CheckResult:
    kept: list[Utterance]
    rejected: list[Rejection]
    sample_rates: Counter = field(default_factory=Counter)
    channels: Counter = field(default_factory=Counter)

    @property
    def hours(self) -> float:
        return sum(u.duration for u in self.kept) / 3600

    def summary(self) -> str:
        lines = [f"kept {len(self.kept)} utterance(s), {self.hours:.2f} h"]
        if self.kept:
            rates = ", ".join(f"{sr} Hz: {n}" for sr, n in sorted(self.sample_rates.items()))
            chans = ", ".join(f"{c} ch: {n}" for c, n in sorted(self.channels.items()))
            lines.append(f"  sample rates: {rates}; channels: {chans}")
        lines.append(f"rejected {len(self.rejected)}")
        for reason, group in _group(self.rejected).items():
            lines.append(f"  {reason}: {len(group)} (e.g. {display_path(group[0].origin)}: {group[0].detail})")
        return "\n".join(lines)


def _group(rejected: list[Rejection]) -> dict[str, list[Rejection]]:
    groups: dict[str, list[Rejection]] = {}
    for r in rejected:
        groups.setdefault(r.reason, []).append(r)
    return dict(sorted(groups.items(), key=lambda kv: -len(kv[1])))


def _is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS


def detect_layout(source: str | os.PathLike) -> str:
    source = Path(source)
    if source.is_file():
        return "table"
    if not source.is_dir():
        raise CorpusError(f"{source}: no such file or folder")
    if next(source.rglob("*.trans.txt"), None) is not None:
        return "librispeech"
    return "folder"


def from_folder(root: str | os.PathLike) -> list[Candidate]:
    """Audio files with same-named .txt transcripts; a .txt without audio is reported as a missing file."""
    root = Path(root)
    candidates = []
    audio_stems = set()
    for path in sorted(root.rglob("*")):
        if path.is_file() and _is_audio(path):
            txt = path.with_suffix(".txt")
            text = txt.read_text(encoding="utf-8", errors="replace") if txt.is_file() else None
            candidates.append(Candidate(str(path.resolve()), text, str(path)))
            audio_stems.add(path.with_suffix(""))
    for txt in sorted(root.rglob("*.txt")):
        if txt.with_suffix("") not in audio_stems:
            candidates.append(
                Candidate(
                    str(txt.with_suffix(".wav").resolve()), txt.read_text(encoding="utf-8", errors="replace"), str(txt)
                )
            )
    return candidates


def from_librispeech_tree(root: str | os.PathLike) -> list[Candidate]:
    """``*.trans.txt`` lines ``<id> <text>``; the audio is ``<id>.<ext>`` in the same folder (flac first)."""
    candidates = []
    for trans in sorted(Path(root).rglob("*.trans.txt")):
        folder = trans.parent
        for lineno, utt_id, text in read_trans_txt(trans):
            audio = next(
                (folder / f"{utt_id}{ext}" for ext in AUDIO_EXTENSIONS if (folder / f"{utt_id}{ext}").is_file()),
                folder / f"{utt_id}.flac",
            )
            candidates.append(Candidate(str(audio.resolve()), text, f"{trans}:{lineno}", {"id": utt_id}))
    return candidates


def from_table(table: str | os.PathLike) -> list[Candidate]:
    """Rows of a CSV/TSV (delimiter from the extension, else sniffed); extra named columns are kept as extras."""
    table = Path(table)
    raw = table.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise CorpusError(f"{table}:{line}: not UTF-8 (byte 0x{raw[e.start]:02x}); save the table as UTF-8") from None
    if table.suffix.lower() in (".tsv", ".tab"):
        delimiter = "\t"
    else:
        try:
            delimiter = csv.Sniffer().sniff(text[:4096], delimiters=",\t;|").delimiter
        except csv.Error:
            delimiter = ","
    rows = [r for r in csv.reader(text.splitlines(), delimiter=delimiter) if any(c.strip() for c in r)]
    if not rows:
        raise CorpusError(f"{table}: no rows")
    header = [c.strip().lower() for c in rows[0]]
    has_header = any(c in _PATH_COLUMNS for c in header) or (
        not _is_audio(Path(rows[0][0].strip())) and any(c in _TEXT_COLUMNS for c in header)
    )
    if has_header:
        path_col = next((header.index(c) for c in _PATH_COLUMNS if c in header), None)
        text_col = next((header.index(c) for c in _TEXT_COLUMNS if c in header), None)
        if path_col is None or text_col is None:
            raise CorpusError(
                f"{table}: header {rows[0]} needs a path column ({', '.join(_PATH_COLUMNS)}) "
                f"and a text column ({', '.join(_TEXT_COLUMNS)})"
            )
        body, first_line = rows[1:], 2
    else:
        path_col, text_col, body, first_line = 0, 1, rows, 1
    base = table.resolve().parent
    candidates = []
    for i, row in enumerate(body):
        origin = f"{table}:{first_line + i}"
        path = row[path_col].strip() if len(row) > path_col else ""
        text_value = row[text_col] if len(row) > text_col else None
        extra = {}
        if has_header:
            extra = {
                header[j]: v for j, v in enumerate(row[: len(header)]) if j not in (path_col, text_col) and header[j]
            }
        full = Path(path) if os.path.isabs(path) else base / path
        candidates.append(Candidate(str(full) if path else "", text_value, origin, extra))
    return candidates


def find_candidates(source: str | os.PathLike, layout: str = "auto") -> list[Candidate]:
    if layout not in LAYOUTS:
        raise CorpusError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if layout == "auto":
        layout = detect_layout(source)
    if layout != "table" and not Path(source).is_dir():
        raise CorpusError(f"{source}: not a folder")
    if layout == "table" and not Path(source).is_file():
        raise CorpusError(f"{source}: not a file")
    return {"folder": from_folder, "librispeech": from_librispeech_tree, "table": from_table}[layout](source)


def _judge_audio(
    path: str, header: AudioInfo | AudioError, max_duration: float | None, min_sample_rate: int
) -> tuple[str, str] | AudioInfo:
    """(reason, detail) for a rejected file, else its AudioInfo."""
    if isinstance(header, AudioError):
        if not path or not os.path.isfile(path):
            return MISSING, f"{path or '(no path)'} does not exist"
        if os.path.getsize(path) == 0:
            return EMPTY, f"{path} has 0 bytes"
        return UNREADABLE, str(header)
    if header.sample_rate <= 0 or header.frames <= 0:
        return NO_SAMPLES, f"{path}: {header.frames} frames at {header.sample_rate} Hz"
    if header.sample_rate < min_sample_rate:
        return LOW_RATE, f"{path}: {header.sample_rate} Hz < {min_sample_rate} Hz"
    if max_duration is not None and header.duration > max_duration:
        return TOO_LONG, f"{path}: {header.duration:.1f} s > {max_duration} s"
    return header


def _utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_corpus(
    candidates: list[Candidate],
    alphabet: str = DEFAULT_ALPHABET,
    workers: int = 8,
    allow_empty_text: bool = False,
    max_duration: float | None = None,
    min_sample_rate: int = 1,
) -> CheckResult:
    """Check every candidate's transcript, then (in parallel) its audio header; keeps the input order."""
    tokenizer = CharTokenizer(alphabet)
    rejected: list[Rejection] = []
    texted: list[tuple[Candidate, str]] = []
    seen: set[str] = set()
    for c in candidates:
        if c.path and not _utf8(c.path):  # a manifest is UTF-8 JSON: such a name cannot be written into one
            shown = display_path(c.path)
            why = "a manifest is UTF-8 JSON: rename the file (its bytes that are not UTF-8 are shown as \\xNN)"
            rejected.append(Rejection(shown, NOT_UTF8_NAME, why, c.origin))
            continue
        if c.text is None:
            rejected.append(Rejection(c.path, NO_TRANSCRIPT, "no transcript found", c.origin))
            continue
        text = normalize_text(c.text)
        if c.path and c.path in seen:
            rejected.append(Rejection(c.path, DUPLICATE, f"{c.path} is listed more than once", c.origin))
            continue
        if not text and not allow_empty_text:
            rejected.append(Rejection(c.path, EMPTY_TEXT, "transcript is empty after normalisation", c.origin))
            continue
        oov = tokenizer.oov_chars(text)
        if oov:
            shown = " ".join(repr(ch) for ch in oov)
            rejected.append(Rejection(c.path, OOV, f"{shown} in {text!r}", c.origin))
            continue
        seen.add(c.path)
        texted.append((c, text))

    headers = probe_headers([c.path or "" for c, _ in texted], workers)
    checks = [_judge_audio(c.path, h, max_duration, min_sample_rate) for (c, _), h in zip(texted, headers)]
    result = CheckResult([], rejected)
    for (c, text), check in zip(texted, checks):
        if isinstance(check, tuple):
            result.rejected.append(Rejection(c.path, check[0], check[1], c.origin))
            continue
        result.kept.append(Utterance(c.path, round(check.duration, 4), text, dict(c.extra), c.origin))
        result.sample_rates[check.sample_rate] += 1
        result.channels[check.channels] += 1
    return result


def write_rejects(path: str | os.PathLike, rejected: list[Rejection]) -> None:
    """One line per rejected entry: path, reason, detail, origin (tab-separated, with a header)."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["path", "reason", "detail", "origin"])
        for r in rejected:  # a name that is not UTF-8 (in a path or an origin) has its bytes as \xNN
            w.writerow([display_path(str(v)) if v else v for v in (r.path, r.reason, r.detail, r.origin)])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr manifest", description=__doc__, formatter_class=DefaultsHelpFormatter)
    parser.add_argument("source", help="a folder (audio + .txt, or a LibriSpeech-style tree) or a CSV/TSV file")
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="manifest to write (.jsonl)")
    parser.add_argument(
        "--layout", choices=LAYOUTS, default="auto", help="how transcripts sit beside the audio (auto: guessed)"
    )
    parser.add_argument("--rejects", help="where to list rejected entries (default: OUTPUT.rejects.tsv)")
    parser.add_argument(
        "--alphabet",
        default=DEFAULT_ALPHABET,
        help="characters the model will predict (default: space, a-z and apostrophe)",
    )
    parser.add_argument("--allow-empty-text", action="store_true", help="keep utterances with empty transcripts")
    parser.add_argument("--max-duration", type=float, help="reject utterances longer than this (seconds)")
    parser.add_argument("--min-sample-rate", type=int, default=1, help="reject audio below this rate (Hz)")
    parser.add_argument("--workers", type=int, default=8, help="parallel header reads (default 8)")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail (status 2) if anything was rejected; the manifest of what passed is still written",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """``asr manifest``; errors go up to :func:`asr.cli.main` (``asr: error: ...``, status 2)."""
    args = build_parser().parse_args(argv)
    candidates = find_candidates(args.source, args.layout)
    result = check_corpus(
        candidates, args.alphabet, args.workers, args.allow_empty_text, args.max_duration, args.min_sample_rate
    )
    print(result.summary())
    output = Path(args.output)
    rejects = Path(args.rejects) if args.rejects else output.with_name(output.name + ".rejects.tsv")
    if result.rejected:
        rejects.parent.mkdir(parents=True, exist_ok=True)
        write_rejects(rejects, result.rejected)
        print(f"rejects: {rejects}")
    else:
        rejects.unlink(missing_ok=True)
    if not result.kept:
        raise CorpusError(
            f"no usable utterance in {args.source}; {output} not written"
            + (f" (rejects: {rejects})" if result.rejected else "")
        )
    write_manifest(output, result.kept)
    print(f"manifest: {output}")
    if args.strict and result.rejected:
        raise CorpusError(
            f"{len(result.rejected)} entr{'y' if len(result.rejected) == 1 else 'ies'} rejected "
            f"(--strict); {output} holds the {len(result.kept)} that passed, see {rejects}"
        )
    return 0
