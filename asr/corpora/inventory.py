"""Taking stock of a corpus, shared by every preparer: audio headers read in parallel, ``*.trans.txt`` transcript
files, and the summary that tells at a glance whether a split was prepared completely.

A preparer reads every header before writing a manifest (a bad file found hours into training costs far more than
a minute of checking now); a training split has ~100k files, so the headers are read by a pool of threads.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

from asr.data.audio import AudioError, AudioInfo, audio_info
from asr.data.manifest import Utterance


def probe_headers(paths: Sequence[str | os.PathLike], workers: int = 16) -> list[AudioInfo | AudioError]:
    """The header of every file, in order; an unreadable file gives its :class:`AudioError` instead of raising,
    so that one bad file is reported rather than failing a whole corpus."""

    def probe(path: str | os.PathLike) -> AudioInfo | AudioError:
        try:
            return audio_info(path)
        except AudioError as e:
            return e

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(probe, paths, chunksize=64))


def read_trans_txt(path: str | os.PathLike) -> Iterator[tuple[int, str, str]]:
    """``(line number, utterance id, text)`` of each line ``<utterance-id> <text>`` of a LibriSpeech-style file.

    Bytes that are not UTF-8 become U+FFFD, which no alphabet holds, so the line is rejected by name later
    instead of the whole file failing to decode.
    """
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if line.strip():
            utt_id, _, text = line.strip().partition(" ")
            yield lineno, utt_id, text


def summarize(split: str, manifest: str | os.PathLike, utterances: list[Utterance], problems: list[str]) -> dict:
    """Counts to compare with the published ones, and what was left out (the full list is in the summary file)."""
    longest = max(utterances, key=lambda u: u.duration, default=None)
    return {
        "split": split,
        "manifest": str(manifest),
        "utterances": len(utterances),
        "hours": round(sum(u.duration for u in utterances) / 3600, 3),
        "speakers": len({u.extra.get("speaker") for u in utterances} - {None}),
        "longest": {"id": longest.extra.get("id"), "seconds": longest.duration} if longest else None,
        "problems": problems,
    }


def format_summary(summaries: list[dict]) -> str:
    rows = [f"{'split':<16} {'utterances':>10} {'hours':>8} {'speakers':>8}  {'longest':<28} manifest"]
    for s in summaries:
        longest = f"{s['longest']['id']} ({s['longest']['seconds']:.1f} s)" if s["longest"] else "-"
        rows.append(
            f"{s['split']:<16} {s['utterances']:>10} {s['hours']:>8.2f} {s['speakers']:>8}  {longest:<28} "
            f"{s['manifest']}"
        )
        if s["problems"]:
            rows.append(f"  {len(s['problems'])} left out, e.g. {s['problems'][0]}")
    return "\n".join(rows)
