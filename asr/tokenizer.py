"""Text normalisation and the character vocabulary that CTC predicts.

Index 0 is the CTC blank. The default vocabulary is space, a-z and the apostrophe (LibriSpeech's alphabet).
The tokenizer is stored inside the model file, so a model always decodes with the alphabet it was trained on.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Sequence

BLANK = "<blank>"
DEFAULT_ALPHABET = " abcdefghijklmnopqrstuvwxyz'"

# Punctuation that carries nothing a character CTC model can hear; removed by normalisation.
_PUNCT = re.compile(r"[.,;:!?\"()\[\]{}«»“”„]")
_SPACE = re.compile(r"\s+")


class OutOfVocabularyError(ValueError):
    """The text has characters that the tokenizer cannot represent."""


def normalize_text(text: str) -> str:
    """Lower-case, fold unicode look-alikes, drop punctuation, map hyphens/underscores to spaces, squeeze spaces.

    Letters with accents are *not* folded to ASCII: an "é" in a transcript is reported as out of vocabulary
    rather than silently rewritten, because the right fix (a larger alphabet or a lexicon rule) is the user's.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    text = re.sub(r"[-_/\u2013\u2014]", " ", text)
    text = _PUNCT.sub("", text)
    return _SPACE.sub(" ", text).strip()


class CharTokenizer:
    """Characters to ids and back; id 0 is the CTC blank."""

    def __init__(self, alphabet: Sequence[str] | str = DEFAULT_ALPHABET):
        chars = list(alphabet)
        if len(set(chars)) != len(chars):
            raise ValueError("alphabet has repeated characters")
        self.alphabet = "".join(chars)
        self.vocab = [BLANK] + chars
        self._index = {c: i for i, c in enumerate(self.vocab)}

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def blank_id(self) -> int:
        return 0

    def oov_chars(self, text: str) -> list[str]:
        """Characters of normalised ``text`` outside the vocabulary (sorted, unique)."""
        return sorted({c for c in normalize_text(text) if c not in self._index or c == BLANK})

    def encode(self, text: str) -> list[int]:
        norm = normalize_text(text)
        bad = sorted({c for c in norm if c not in self._index})
        if bad:
            shown = ", ".join(repr(c) for c in bad)
            raise OutOfVocabularyError(f"characters outside the vocabulary: {shown} in {text!r}")
        return [self._index[c] for c in norm]

    def decode(self, ids: Sequence[int]) -> str:
        """Ids (no blanks expected, but they are ignored) to text with squeezed spaces."""
        text = "".join(self.vocab[i] for i in ids if i != 0)
        return _SPACE.sub(" ", text).strip()

    def to_dict(self) -> dict[str, Any]:
        return {"type": "char", "alphabet": self.alphabet}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CharTokenizer":
        if d.get("type") != "char":
            raise ValueError(f"unknown tokenizer type {d.get('type')!r}")
        return cls(d["alphabet"])
