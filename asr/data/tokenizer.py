"""Text normalisation and the vocabulary that CTC predicts: characters, or sentencepiece word pieces.

Index 0 is the CTC blank for both kinds. The default vocabulary is space, a-z and the apostrophe (LibriSpeech's
alphabet). Word pieces (``tokenizer.type: bpe``) are a sentencepiece model trained on the normalised training
transcripts: fewer, longer targets per second of speech, so CTC fits at coarser frame rates (subsampling 4-8),
where characters run out of frames. The tokenizer is stored inside the model file (a sentencepiece model as its
serialised bytes), so a model always decodes with the vocabulary it was trained on.

Both tokenizers offer the same interface: ``encode``, ``decode``, ``blank_id``, ``len()``, ``to_dict`` /
``from_dict``, and for alignment ``word_ids`` and ``word_separator_id``; :func:`tokenizer_from_dict` rebuilds
either from its dict, :func:`build_tokenizer` makes one from a config.
"""

from __future__ import annotations

import io
import os
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterable, Protocol, Sequence, runtime_checkable

from asr.errors import OutOfVocabularyError  # noqa: F401  (re-exported: raised here, caught as asr.ASRError)

BLANK = "<blank>"
DEFAULT_ALPHABET = " abcdefghijklmnopqrstuvwxyz'"

# Punctuation that carries nothing a character CTC model can hear; removed by normalisation.
_PUNCT = re.compile(r"[.,;:!?\"()\[\]{}«»“”„]")
_SPACE = re.compile(r"\s+")


@dataclass
class TokenizerConfig:
    # char: one label per character of ``alphabet``; bpe: sentencepiece word pieces (asr/data/tokenizer.py).
    type: str = "char"
    # The characters a char model predicts (ignored for bpe, whose pieces come from the transcripts).
    alphabet: str = DEFAULT_ALPHABET
    # bpe: pieces to learn from the training transcripts at the start of `asr train`, <unk> included; the model
    # outputs one more (the CTC blank). Sentencepiece refuses more than the transcripts can provide.
    vocab_size: int = 256
    # bpe: an existing sentencepiece model file to use instead of training one (vocab_size is then ignored).
    model_file: str | None = None

    def __post_init__(self) -> None:
        if self.type not in ("char", "bpe"):
            raise ValueError(f"tokenizer.type must be 'char' or 'bpe', got {self.type!r}")
        if self.type == "bpe" and self.model_file is None and self.vocab_size < 2:
            raise ValueError(f"tokenizer.vocab_size must be at least 2, got {self.vocab_size}")


@runtime_checkable
class Tokenizer(Protocol):
    """What decoding, alignment, datasets and the model file need of a tokenizer; both kinds below provide it."""

    def __len__(self) -> int: ...

    @property
    def blank_id(self) -> int: ...

    @property
    def word_separator_id(self) -> int | None: ...

    def oov_chars(self, text: str) -> list[str]: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def word_ids(self, word: str) -> list[int]: ...

    def to_dict(self) -> dict[str, Any]: ...


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

    def word_ids(self, word: str) -> list[int]:
        """Ids of one (normalised) word, leaving out what the vocabulary lacks: alignment must not lose a word."""
        return [self._index[c] for c in word if c in self._index and c != BLANK]

    @property
    def word_separator_id(self) -> int | None:
        """The space between words is a label of its own for characters (None if the alphabet has no space)."""
        return self._index.get(" ")

    def to_dict(self) -> dict[str, Any]:
        return {"type": "char", "alphabet": self.alphabet}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CharTokenizer":
        if d.get("type") != "char":
            raise ValueError(f"unknown tokenizer type {d.get('type')!r}")
        return cls(d["alphabet"])


class BPETokenizer:
    """Sentencepiece word pieces (BPE or unigram) to ids and back; id 0 is the CTC blank.

    Model id ``i + 1`` is sentencepiece id ``i``: the shift leaves 0 for the blank without asking anything of the
    sentencepiece model, so any model file works, including one trained elsewhere. A word's first piece starts
    with "▁" (sentencepiece's word-start mark), which is how decoding restores the spaces.
    """

    def __init__(self, model_proto: bytes):
        import sentencepiece

        self.model_proto = bytes(model_proto)
        self._sp = sentencepiece.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(self.model_proto)
        except (RuntimeError, OSError) as e:
            raise ValueError(f"not a sentencepiece model ({str(e).strip().splitlines()[0][:200]})") from None
        self._unk = self._sp.unk_id()
        self._pieces = [BLANK] + [self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())]
        # The characters the pieces spell, and the space: what character checks (LM lexicons, LM text) ask for.
        self.alphabet = " " + "".join(sorted({p for p in self._pieces[1:] if len(p) == 1 and p != "\u2581"}))

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "BPETokenizer":
        with open(path, "rb") as f:
            return cls(f.read())

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, model_type: str = "bpe") -> "BPETokenizer":
        """Train on normalised ``texts``; every character seen becomes a piece, so none of them is unknown.

        ``vocab_size`` counts sentencepiece's pieces (with ``<unk>``); the model outputs one more, the blank.
        Sentencepiece's own normaliser is off (``identity``): :func:`normalize_text` has done that job, and the
        stored model stays a few kilobytes instead of carrying a 240 kB NFKC table.
        """
        import sentencepiece

        sentences = [t for t in (normalize_text(x) for x in texts) if t]
        if not sentences:
            raise ValueError("no training transcripts to learn word pieces from")
        proto = io.BytesIO()
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=proto,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=1.0,
            normalization_rule_name="identity",
            unk_id=0,
            bos_id=-1,
            eos_id=-1,
            pad_id=-1,
            num_threads=1,
            minloglevel=2,
            input_sentence_size=2_000_000,
            shuffle_input_sentence=True,
        )
        return cls(proto.getvalue())

    def __len__(self) -> int:
        return self._sp.get_piece_size() + 1

    @property
    def blank_id(self) -> int:
        return 0

    @property
    def pieces(self) -> list[str]:
        """The pieces by model id (index 0 is the blank); also as ``vocab``, the name CharTokenizer uses."""
        return list(self._pieces)

    vocab = pieces

    def oov_chars(self, text: str) -> list[str]:
        """Characters of normalised ``text`` that come out as ``<unk>`` (sorted, unique)."""
        return sorted(
            {c for c in normalize_text(text).replace(" ", "") if self._sp.encode(c) and self._unk in self._sp.encode(c)}
        )

    def encode(self, text: str) -> list[int]:
        ids = self._sp.encode(normalize_text(text))
        if self._unk >= 0 and self._unk in ids:
            shown = ", ".join(repr(c) for c in self.oov_chars(text)) or "pieces"
            raise OutOfVocabularyError(f"characters outside the vocabulary: {shown} in {text!r}")
        return [i + 1 for i in ids]

    def decode(self, ids: Sequence[int]) -> str:
        """Ids (blanks ignored) to text: pieces joined, "▁" read as a space, spaces squeezed."""
        text = self._sp.decode([int(i) - 1 for i in ids if i != 0])
        return _SPACE.sub(" ", text).strip()

    def word_ids(self, word: str) -> list[int]:
        """Ids of one (normalised) word, its first piece marked as a word start; ``<unk>`` pieces left out."""
        return [i + 1 for i in self._sp.encode(word) if i != self._unk]

    @property
    def word_separator_id(self) -> int | None:
        """None: words are not separated by a label; each begins with a "▁" piece."""
        return None

    def to_dict(self) -> dict[str, Any]:
        # bytes: a plain value that torch.load(weights_only=True) accepts, and a few kB with the identity normaliser.
        return {"type": "bpe", "model_proto": self.model_proto}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BPETokenizer":
        if d.get("type") != "bpe":
            raise ValueError(f"unknown tokenizer type {d.get('type')!r}")
        proto = d["model_proto"]
        if not isinstance(proto, (bytes, bytearray)):
            raise ValueError(f"tokenizer model_proto must be bytes, got {type(proto).__name__}")
        return cls(bytes(proto))

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers under spawn pickle the dataset
        return {"model_proto": self.model_proto}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["model_proto"])


TOKENIZERS: dict[str, Any] = {"char": CharTokenizer, "bpe": BPETokenizer}


def tokenizer_from_dict(d: dict[str, Any]) -> Tokenizer:
    """The tokenizer a model file or checkpoint stored, by its ``type``; ValueError for an unknown one."""
    kind = d.get("type") if isinstance(d, dict) else None
    if kind not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer type {kind!r} (known: {', '.join(TOKENIZERS)})")
    return TOKENIZERS[kind].from_dict(d)


def build_tokenizer(config: TokenizerConfig, train_texts: Iterable[str] = ()) -> Tokenizer:
    """The tokenizer a training config asks for: the alphabet, a sentencepiece model file, or one trained here.

    Raises ValueError with the cause (a missing or unreadable model file, a vocabulary too large for the
    transcripts); the caller adds where the setting came from.
    """
    if config.type == "char":
        return CharTokenizer(config.alphabet)
    if config.model_file:
        if not os.path.isfile(config.model_file):
            raise ValueError(f"tokenizer.model_file {config.model_file}: file not found")
        try:
            return BPETokenizer.from_file(config.model_file)
        except ValueError as e:
            raise ValueError(f"tokenizer.model_file {config.model_file}: {e}") from None
    try:
        return BPETokenizer.train(train_texts, config.vocab_size)
    except RuntimeError as e:  # sentencepiece's own message, e.g. "Vocabulary size too high (300). ... <= 100."
        why = re.sub(r"^.*?\]\s*", "", str(e).strip().splitlines()[0])[:300]
        raise ValueError(
            f"cannot train a {config.vocab_size}-piece sentencepiece model on the training transcripts: {why}"
        ) from None
