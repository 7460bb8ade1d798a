"""`asr evaluate`: transcribe a manifest and score it (WER, CER, error counts, per-utterance report)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from asr.decoding import Decoder
from asr.manifest import read_manifest
from asr.metrics import ErrorRates
from asr.model_file import LoadedModel
from asr.tokenizer import normalize_text
from asr.transcribe import transcribe


@dataclass
class Evaluation:
    rates: ErrorRates
    utterances: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        w, c = self.rates.words, self.rates.chars
        return {
            "wer": self.rates.wer, "cer": self.rates.cer, "exact_match": self.rates.exact_match,
            "substitutions": w.substitutions, "deletions": w.deletions, "insertions": w.insertions,
            "reference_words": w.reference_length,
            "char_substitutions": c.substitutions, "char_deletions": c.deletions, "char_insertions": c.insertions,
            "reference_chars": c.reference_length,
            "num_utterances": self.rates.utterances, "num_skipped": len(self.skipped),
        }

    def report(self) -> dict[str, Any]:
        return {**self.summary(), "skipped": self.skipped, "utterances": self.utterances}


def evaluate(loaded: LoadedModel, manifest: str | os.PathLike, max_batch_seconds: float = 300.0,
             bf16: bool = False, decoder: Decoder | None = None) -> Evaluation:
    """Score ``loaded`` on ``manifest``; bad lines and unreadable audio are skipped and listed, not fatal."""
    errors: list[str] = []
    utts = read_manifest(manifest, strict=False, errors=errors)
    result = Evaluation(ErrorRates(), skipped=list(errors))
    transcripts = transcribe(loaded, [u.audio_filepath for u in utts], max_batch_seconds=max_batch_seconds, bf16=bf16,
                             decoder=decoder)
    for u, t in zip(utts, transcripts):
        if t.error is not None:
            result.skipped.append(f"{u.source}: {t.error}")
            continue
        ref = normalize_text(u.text)
        w, c = result.rates.add(ref, t.text or "")
        result.utterances.append({
            "audio_filepath": u.audio_filepath, "reference": ref, "hypothesis": t.text,
            "word_errors": w.total, "reference_words": w.reference_length,
            "substitutions": w.substitutions, "deletions": w.deletions, "insertions": w.insertions,
            "char_errors": c.total, "reference_chars": c.reference_length,
        })
    return result


def write_report(evaluation: Evaluation, path: str | os.PathLike, **extra: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump({**extra, **evaluation.report()}, f, indent=2, ensure_ascii=False)
