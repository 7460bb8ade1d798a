"""Word and character error rates, computed with jiwer and accumulated over a corpus.

Corpus WER is total errors over total reference words (not a mean of per-utterance rates), as every ASR paper
reports it. A rate over no reference words is undefined: asking for it raises :class:`NoReferenceError` instead of
returning 0 %, because a score of 0 % over nothing would read as perfect recognition.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import jiwer

from asr.errors import NoReferenceError  # noqa: F401  (re-exported: raised here, caught as asr.ASRError)


@dataclass
class Errors:
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    reference_length: int = 0

    @property
    def total(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """Errors per reference unit; raises :class:`NoReferenceError` when there is no reference unit."""
        if self.reference_length == 0:
            raise NoReferenceError(f"error rate over no reference units ({self.total} errors): undefined")
        return self.total / self.reference_length

    def __iadd__(self, other: "Errors") -> "Errors":
        self.substitutions += other.substitutions
        self.deletions += other.deletions
        self.insertions += other.insertions
        self.reference_length += other.reference_length
        return self


def _align(reference: str, hypothesis: str, unit: str) -> Errors:
    ref_units = reference.split() if unit == "word" else list(reference)
    hyp_units = hypothesis.split() if unit == "word" else list(hypothesis)
    if not ref_units:  # jiwer refuses empty references; every hypothesis unit is an insertion
        return Errors(insertions=len(hyp_units))
    if not hyp_units:
        return Errors(deletions=len(ref_units), reference_length=len(ref_units))
    out = (
        jiwer.process_words(reference, hypothesis)
        if unit == "word"
        else jiwer.process_characters(reference, hypothesis)
    )
    return Errors(out.substitutions, out.deletions, out.insertions, out.hits + out.substitutions + out.deletions)


def word_errors(reference: str, hypothesis: str) -> Errors:
    return _align(reference, hypothesis, "word")


def char_errors(reference: str, hypothesis: str) -> Errors:
    return _align(reference, hypothesis, "char")


def word_edits(reference: str, hypothesis: str) -> list[tuple[str, str, str]]:
    """The word-level edits of the minimum alignment as ``(kind, reference_word, hypothesis_word)``.

    ``kind`` is ``"sub"``, ``"del"`` (hypothesis word ``""``) or ``"ins"`` (reference word ``""``); matches are
    left out. Used for the error breakdown of a report, where knowing *which* words go wrong guides the fix.
    """
    ref, hyp = reference.split(), hypothesis.split()
    if not ref or not hyp:
        return [("del", w, "") for w in ref] + [("ins", "", w) for w in hyp]
    out = jiwer.process_words(reference, hypothesis)
    ref, hyp = out.references[0], out.hypotheses[0]
    edits = []
    for chunk in out.alignments[0]:
        if chunk.type == "substitute":
            edits += [
                ("sub", r, h)
                for r, h in zip(
                    ref[chunk.ref_start_idx : chunk.ref_end_idx], hyp[chunk.hyp_start_idx : chunk.hyp_end_idx]
                )
            ]
        elif chunk.type == "delete":
            edits += [("del", r, "") for r in ref[chunk.ref_start_idx : chunk.ref_end_idx]]
        elif chunk.type == "insert":
            edits += [("ins", "", h) for h in hyp[chunk.hyp_start_idx : chunk.hyp_end_idx]]
    return edits


@dataclass
class ErrorBreakdown:
    """Which words are substituted, deleted and inserted, counted over a corpus (icefall's error stats)."""

    substitutions: Counter = field(default_factory=Counter)
    deletions: Counter = field(default_factory=Counter)
    insertions: Counter = field(default_factory=Counter)

    def add(self, reference: str, hypothesis: str) -> None:
        for kind, r, h in word_edits(reference, hypothesis):
            if kind == "sub":
                self.substitutions[(r, h)] += 1
            elif kind == "del":
                self.deletions[r] += 1
            else:
                self.insertions[h] += 1

    def top(self, n: int = 20) -> dict[str, list[dict[str, object]]]:
        """The ``n`` most frequent of each kind, most frequent first (ties in word order, so output is stable)."""

        def ranked(counter: Counter) -> list:
            return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:n]

        return {
            "top_substitutions": [
                {"reference": r, "hypothesis": h, "count": c} for (r, h), c in ranked(self.substitutions)
            ],
            "top_deletions": [{"word": w, "count": c} for w, c in ranked(self.deletions)],
            "top_insertions": [{"word": w, "count": c} for w, c in ranked(self.insertions)],
        }


@dataclass
class ErrorRates:
    """Accumulates word and character errors over many utterances.

    An utterance whose audio could not be read goes in with :meth:`add_unreadable`: every reference word and
    character counts as deleted, so a corpus figure can never improve by losing the files it cannot read.
    """

    words: Errors = field(default_factory=Errors)
    chars: Errors = field(default_factory=Errors)
    utterances: int = 0
    exact: int = 0
    unreadable: int = 0

    def add(self, reference: str, hypothesis: str) -> tuple[Errors, Errors]:
        w, c = word_errors(reference, hypothesis), char_errors(reference, hypothesis)
        self.words += w
        self.chars += c
        self.utterances += 1
        self.exact += int(w.total == 0)
        return w, c

    def add_unreadable(self, reference: str) -> tuple[Errors, Errors]:
        """Score an utterance with no hypothesis at all: all deletions, and never an exact match."""
        w, c = word_errors(reference, ""), char_errors(reference, "")
        self.words += w
        self.chars += c
        self.utterances += 1
        self.unreadable += 1
        return w, c

    @property
    def wer(self) -> float:
        return self.words.rate

    @property
    def cer(self) -> float:
        return self.chars.rate

    @property
    def exact_match(self) -> float:
        if not self.utterances:
            raise NoReferenceError("exact-match rate over no utterances: undefined")
        return self.exact / self.utterances
