"""Word and character error rates, computed with jiwer and accumulated over a corpus.

Corpus WER is total errors over total reference words (not a mean of per-utterance rates), as every ASR paper
reports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jiwer


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
        if self.reference_length == 0:
            return 0.0 if self.total == 0 else float("inf")
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
    out = jiwer.process_words(reference, hypothesis) if unit == "word" else jiwer.process_characters(reference, hypothesis)
    return Errors(out.substitutions, out.deletions, out.insertions, out.hits + out.substitutions + out.deletions)


def word_errors(reference: str, hypothesis: str) -> Errors:
    return _align(reference, hypothesis, "word")


def char_errors(reference: str, hypothesis: str) -> Errors:
    return _align(reference, hypothesis, "char")


@dataclass
class ErrorRates:
    """Accumulates word and character errors over many utterances."""

    words: Errors = field(default_factory=Errors)
    chars: Errors = field(default_factory=Errors)
    utterances: int = 0
    exact: int = 0

    def add(self, reference: str, hypothesis: str) -> tuple[Errors, Errors]:
        w, c = word_errors(reference, hypothesis), char_errors(reference, hypothesis)
        self.words += w
        self.chars += c
        self.utterances += 1
        self.exact += int(w.total == 0)
        return w, c

    @property
    def wer(self) -> float:
        return self.words.rate

    @property
    def cer(self) -> float:
        return self.chars.rate

    @property
    def exact_match(self) -> float:
        return self.exact / self.utterances if self.utterances else 0.0
