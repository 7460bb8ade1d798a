"""A model's confidence on a set of recordings, measured the way ``asr transcribe`` measures one file.

``asr train`` stores the validation set's profile in the model card (:func:`confidence_profile`), and the
transcriber compares each file's mean word confidence with it (:func:`asr.model.card.low_confidence_warning`):
both sides must be the same measure (word confidences of :mod:`asr.decoding.alignment`, averaged over a file's
words) or the comparison says nothing. Figures on in-domain and out-of-domain audio: docs/models.md.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from asr.inference.transcribe import Transcriber
from asr.model.file import LoadedModel


def file_confidences(loaded: LoadedModel, paths: Sequence[str | os.PathLike]) -> list[float | None]:
    """Each file's mean word confidence (None for a file with no words, or that cannot be read)."""
    transcriber = Transcriber(loaded, word_timestamps=True)
    out: list[float | None] = []
    for t in transcriber.run([str(p) for p in paths]):
        words = [w.confidence for s in t.segments for w in s.words]
        out.append(sum(words) / len(words) if t.error is None and words else None)
    return out


def confidence_profile(loaded: LoadedModel, paths: Sequence[str | os.PathLike]) -> dict[str, Any] | None:
    """The mean over files of each file's mean word confidence, with its 5th percentile: the card's
    ``confidence`` entry (None when no file had a word)."""
    means = sorted(c for c in file_confidences(loaded, paths) if c is not None)
    if not means:
        return None
    return {
        "mean": round(sum(means) / len(means), 4),
        "p05": round(means[int(0.05 * (len(means) - 1))], 4),
        "utterances": len(means),
        "measure": "mean word confidence per utterance (asr.decoding.alignment), averaged over utterances",
    }
