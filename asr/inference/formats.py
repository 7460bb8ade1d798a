"""One transcription result written as plain text, JSON, SubRip (.srt), WebVTT (.vtt) or TSV.

The result is a dict shaped like whisper's, so scripts that parse whisper's output need few changes::

    {"path": ..., "text": ..., "duration": seconds,
     "segments": [{"start": s, "end": s, "text": ..., "words": [{"word", "start", "end", "confidence"}],
                   "no_speech_prob": p}]}

Subtitles are cut from the word times: a cue holds at most two lines of :data:`MAX_LINE_CHARS` characters and
lasts at most :data:`MAX_CUE_SECONDS`; a pause of :data:`PAUSE_SECONDS` or more between words, or a segment
boundary, always starts a new cue (a reader expects the text to change when the speaker stops). These are the
usual broadcast guidelines (BBC, Netflix: 42 characters, two lines, about 6-7 s). A segment without word times is
spread over its span in proportion to its characters. TSV is whisper's: ``start\\tend\\ttext`` per segment, in
integer milliseconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from asr.errors import UsageError

FORMATS = ("text", "json", "srt", "vtt", "tsv")
MAX_LINE_CHARS = 42
MAX_LINES = 2
MAX_CUE_SECONDS = 6.0
PAUSE_SECONDS = 0.5
# A cue whose words end sooner stays up this long (unless the next cue starts first), so it can be read.
MIN_CUE_SECONDS = 1.0


@dataclass
class Cue:
    start: float
    end: float
    lines: list[str]


@dataclass
class _Word:
    word: str
    start: float
    end: float


# How a path is written in a ``PATH<TAB>TEXT`` line (``asr transcribe``'s text output), so that every line is one
# file and the path comes back by undoing these: ``\\`` ``\t`` ``\n`` ``\r``, and ``\xNN`` for a byte that is not
# UTF-8 (GNU ls's --quoting-style=escape). Any other character is written as it is.
PATH_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def escape_path(path: str) -> str:
    """``path`` as one tab-free, newline-free field of a text line (see :data:`PATH_ESCAPES`)."""
    out = []
    for c in path:
        if c in PATH_ESCAPES:
            out.append(PATH_ESCAPES[c])
        elif "\udc80" <= c <= "\udcff":  # a byte that was not UTF-8, as the file system decoder keeps it
            out.append(f"\\x{ord(c) - 0xDC00:02x}")
        else:
            out.append(c)
    return "".join(out)


def unescape_path(field: str) -> str:
    """The inverse of :func:`escape_path` (bytes that were not UTF-8 come back as surrogates, as ``os`` gives)."""
    out, i = bytearray(), 0
    back = {v[1]: k for k, v in PATH_ESCAPES.items()}
    while i < len(field):
        c = field[i]
        if c == "\\" and i + 1 < len(field) and field[i + 1] in back:
            out += back[field[i + 1]].encode()
            i += 2
        elif c == "\\" and field[i + 1 : i + 2] == "x" and i + 4 <= len(field):
            out.append(int(field[i + 2 : i + 4], 16))
            i += 4
        else:
            out += c.encode("utf-8", errors="surrogateescape")
            i += 1
    return out.decode("utf-8", errors="surrogateescape")


def text_line(path: str, text: str | None) -> str:
    """One line of ``asr transcribe``'s text output: ``PATH<TAB>TEXT``, the path escaped (:func:`escape_path`)."""
    return f"{escape_path(path)}\t{text or ''}"


def write_result(result: dict, fmt: str) -> str:
    """``result`` rendered in format ``fmt`` (one of :data:`FORMATS`), ending with a newline unless empty."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "text":
        return (result.get("text") or "") + "\n"
    if fmt == "json":
        return json.dumps(result, ensure_ascii=False) + "\n"
    if fmt == "tsv":
        rows = ["start\tend\ttext"]
        for seg in result.get("segments") or []:
            text = " ".join(str(seg.get("text", "")).split())
            rows.append(f"{_ms(seg['start'])}\t{_ms(seg['end'])}\t{text}")
        return "\n".join(rows) + "\n"
    cues = subtitle_cues(result)
    if fmt == "srt":
        blocks = [
            f"{i}\n{_clock(c.start, ',')} --> {_clock(c.end, ',')}\n" + "\n".join(c.lines)
            for i, c in enumerate(cues, 1)
        ]
        return "\n\n".join(blocks) + "\n" if blocks else ""
    blocks = [f"{_clock(c.start, '.')} --> {_clock(c.end, '.')}\n" + "\n".join(c.lines) for c in cues]
    return "\n\n".join(["WEBVTT", *blocks]) + "\n"


def subtitle_cues(result: dict) -> list[Cue]:
    """The subtitle cues of ``result``: word runs cut at pauses, segment boundaries, length and duration."""
    groups: list[list[_Word]] = []
    for seg in result.get("segments") or []:
        words = _segment_words(seg)
        current: list[_Word] = []
        for w in words:
            if current and not _fits(current, w):
                groups.append(current)
                current = []
            current.append(w)
        if current:
            groups.append(current)
    cues = []
    duration = result.get("duration")
    for i, group in enumerate(groups):
        start, end = group[0].start, max(group[-1].end, group[0].start)
        limit = groups[i + 1][0].start if i + 1 < len(groups) else (duration if duration else end + MIN_CUE_SECONDS)
        end = max(end, min(start + MIN_CUE_SECONDS, limit))
        cues.append(Cue(start, end, wrap_lines([w.word for w in group])))
    return cues


def _fits(current: list[_Word], w: _Word) -> bool:
    if w.start - current[-1].end >= PAUSE_SECONDS:
        return False
    if w.end - current[0].start > MAX_CUE_SECONDS:
        return False
    lines = wrap_lines([x.word for x in current] + [w.word])
    return len(lines) <= MAX_LINES and all(len(line) <= MAX_LINE_CHARS for line in lines)


def wrap_lines(words: list[str], width: int = MAX_LINE_CHARS) -> list[str]:
    """Words as lines of at most ``width`` characters, balanced: two lines split where the longer is shortest
    (a word longer than ``width`` gets a line of its own and overflows it)."""
    if not words:
        return []
    text = " ".join(words)
    if len(text) <= width:
        return [text]
    best: tuple[int, int] | None = None
    for k in range(1, len(words)):
        longer = max(len(" ".join(words[:k])), len(" ".join(words[k:])))
        if best is None or longer < best[0]:
            best = (longer, k)
    assert best is not None
    if best[0] <= width:
        return [" ".join(words[: best[1]]), " ".join(words[best[1] :])]
    # More than two lines' worth: fill greedily.
    lines, line = [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}" if line else w
    return lines + [line]


def _segment_words(seg: dict) -> list[_Word]:
    words = seg.get("words")
    if words:
        return [_Word(str(w["word"]), float(w["start"]), float(w["end"])) for w in words if str(w["word"]).strip()]
    tokens = str(seg.get("text", "")).split()
    if not tokens:
        return []
    start, end = float(seg["start"]), float(seg["end"])
    total = sum(len(t) + 1 for t in tokens)
    out, pos = [], 0
    for t in tokens:
        a = start + (end - start) * pos / total
        pos += len(t) + 1
        out.append(_Word(t, a, start + (end - start) * (pos - 1) / total))
    return out


def _ms(seconds: float) -> int:
    return int(round(float(seconds) * 1000))


def _clock(seconds: float, sep: str) -> str:
    ms = max(0, _ms(seconds))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"
