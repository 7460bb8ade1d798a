"""n-gram language models for decoding: build an ARPA file from text, read and check one, tune decoding weights.

Why our own builder: an ARPA file is a small, well-specified format, and interpolated modified Kneser-Ney
(Chen & Goodman; what KenLM's ``lmplz`` writes) is a hundred lines of counting. The pip candidates were checked
and do something else: ``arpabo``'s "Kneser-Ney" subtracts a fixed 0.75 with back-off weights of one, so its
probabilities do not sum to one; ``kaldingram`` is the original (unmodified, back-off) Kneser-Ney of SRILM's
``-ukndiscount``. Perplexities of all three against ``lmplz`` are in docs/benchmarks.md. Counting happens in
memory, so this is for transcripts of up to some millions of words (a recipe's training text), not for
LibriSpeech's 800-million-word LM corpus: use OpenSLR's published ARPA files for that
(:mod:`asr.corpora.librispeech_lm`).

Text is normalised exactly as the model's transcripts are (:func:`asr.data.tokenizer.normalize_text`), so the LM's
words are spelled with the characters the model emits. ``unit="char"`` builds a character LM instead (each
character is a "word", the space is written ``|``): the one kind of LM that flashlight's lexicon-free beam
search can use with a character model (see :mod:`asr.decoding.beam_search`).

    asr lm build train.txt -o lm.arpa --order 3 [--model model.pt] [--unit word|char]
    asr lm tune --model model.pt --manifest dev.jsonl --lm lm.arpa -o lm_params.json
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import math
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

from asr.data.tokenizer import Tokenizer, normalize_text
from asr.errors import LMError  # noqa: F401  (re-exported: raised here, caught as asr.ASRError)

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
SPACE_SYMBOL = "|"  # the space of a character LM: ARPA words cannot contain whitespace
_FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)  # lmplz's --discount_fallback defaults
_LOG10_ZERO = -99.0  # what ARPA writers put for log10(0) (<s> is never predicted)


# ----------------------------------------------------------------------------------------------- reading text


def open_text(path: str | os.PathLike) -> io.TextIOBase:
    """Open plain or gzipped text (``.gz``) for reading as UTF-8; a missing file is an :class:`LMError`."""
    path = str(path)
    if not os.path.isfile(path):
        raise LMError(f"{path}: file not found")
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="strict")
    return open(path, encoding="utf-8", errors="strict")


def read_sentences(paths: Sequence[str | os.PathLike], tokenizer: Tokenizer | None = None) -> Iterator[str]:
    """Normalised non-empty lines of ``paths``; with a ``tokenizer``, a line it cannot spell is an error.

    A ``.jsonl`` file is read as a manifest (its ``text`` fields), so a recipe can build its LM straight from
    the training manifest.
    """
    for path in paths:
        is_manifest = str(path).endswith(".jsonl")
        with open_text(path) as f:
            try:
                for lineno, line in enumerate(f, 1):
                    if is_manifest:
                        try:
                            line = json.loads(line)["text"] if line.strip() else ""
                            if not isinstance(line, str):
                                raise TypeError
                        except (ValueError, KeyError, TypeError):
                            raise LMError(f'{path}:{lineno}: not a manifest line with a "text" field') from None
                    text = normalize_text(line)
                    if not text:
                        continue
                    if tokenizer is not None:
                        bad = [c for c in sorted(set(text)) if c not in tokenizer.alphabet]
                        if bad:
                            raise LMError(
                                f"{path}:{lineno}: characters the model cannot emit: {', '.join(repr(c) for c in bad)}"
                            )
                    yield text
            except UnicodeDecodeError as e:
                raise LMError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def units(sentence: str, unit: str) -> list[str]:
    """A normalised sentence as LM words: its words, or its characters with the space as ``|``."""
    if unit == "word":
        return sentence.split()
    return [SPACE_SYMBOL if c == " " else c for c in sentence]


# ------------------------------------------------------------------------------------ modified Kneser-Ney


@dataclass
class NgramModel:
    """Back-off n-gram probabilities: ``probs[n][ngram] = (log10 p, log10 back-off)`` for n = 1..order."""

    order: int
    probs: list[dict[tuple[str, ...], tuple[float, float]]] = field(default_factory=list)

    def logprob(self, word: str, context: Sequence[str]) -> float:
        """log10 p(word | context) by the back-off rule (unknown words as ``<unk>``)."""
        if (word,) not in self.probs[1]:
            word = UNK
        context = tuple(context)[-(self.order - 1) :] if self.order > 1 else ()
        backoff = 0.0
        for start in range(len(context) + 1):
            h = context[start:]
            entry = self.probs[len(h) + 1].get(h + (word,))
            if entry is not None:
                return backoff + entry[0]
            if h:
                backoff += self.probs[len(h)].get(h, (0.0, 0.0))[1]
        raise LMError(f"<unk> is missing from the LM's unigrams; cannot score {word!r}")

    def sentence_logprob(self, words: Sequence[str]) -> float:
        """log10 p(words </s> | <s>), the sum KenLM's ``query`` reports per sentence."""
        context: list[str] = [BOS]
        total = 0.0
        for w in [*words, EOS]:
            total += self.logprob(w, context)
            context.append(w)
        return total

    def perplexity(self, sentences: Iterable[Sequence[str]]) -> float:
        """Perplexity over all words and sentence ends (KenLM's "Perplexity including OOVs")."""
        total, n = 0.0, 0
        for words in sentences:
            total += self.sentence_logprob(words)
            n += len(words) + 1
        return 10 ** (-total / max(n, 1))


def _discounts(adjusted: Counter, order: int, fallback: bool = True) -> tuple[float, float, float]:
    """Modified-KN discounts D1, D2, D3+ from the counts of counts (Chen & Goodman's estimate, as lmplz)."""
    n = Counter(c for c in adjusted.values() if c <= 4)
    try:
        y = n[1] / (n[1] + 2 * n[2])
        d = (1 - 2 * y * n[2] / n[1], 2 - 3 * y * n[3] / n[2], 3 - 4 * y * n[4] / n[3])
        if all(0 < d_k < k + 1 for k, d_k in enumerate(d)):
            return d
    except ZeroDivisionError:
        pass
    if not fallback:
        raise LMError(
            f"too little text to estimate {order}-gram discounts (counts of counts {n[1]}, {n[2]}, {n[3]}, {n[4]})"
        )
    return _FALLBACK_DISCOUNTS


def build_kneser_ney(sentences: Iterable[Sequence[str]], order: int) -> NgramModel:
    """Interpolated modified Kneser-Ney, the estimate of KenLM's ``lmplz`` (with ``--discount_fallback``).

    The highest order uses raw counts; lower orders use continuation counts (how many distinct words precede
    an n-gram), except n-grams that start with ``<s>``, which nothing can precede. Each n-gram's probability
    is interpolated with its lower order; the interpolation weight of a context becomes its back-off weight,
    so the ARPA file holds the full interpolated probability of every seen n-gram.
    """
    if order < 1:
        raise LMError(f"n-gram order {order}: must be at least 1")
    raw: list[Counter] = [Counter() for _ in range(order + 1)]
    for words in sentences:
        padded = (BOS, *words, EOS)
        for n in range(1, order + 1):
            for i in range(len(padded) - n + 1):
                raw[n][padded[i : i + n]] += 1
    raw[1].pop((BOS,), None)  # <s> is context only, never predicted
    if not raw[1]:
        raise LMError("no text to build a language model from")

    adjusted: list[Counter] = [Counter() for _ in range(order + 1)]
    adjusted[order] = raw[order]
    for n in range(order - 1, 0, -1):
        left = Counter(g[1:] for g in raw[n + 1])
        adjusted[n] = Counter({g: (c if g[0] == BOS else left[g]) for g, c in raw[n].items()})

    vocab = {g[0] for g in raw[1]} | {UNK}
    model = NgramModel(order, [{} for _ in range(order + 1)])
    gammas: list[dict[tuple[str, ...], float]] = [{} for _ in range(order + 1)]
    for n in range(1, order + 1):
        d = _discounts(adjusted[n], n)
        totals: dict[tuple[str, ...], float] = defaultdict(float)
        kinds: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0, 0, 0])
        for g, c in adjusted[n].items():
            totals[g[:-1]] += c
            kinds[g[:-1]][min(c, 3) - 1] += 1
        gamma = {h: sum(dk * nk for dk, nk in zip(d, kinds[h])) / t for h, t in totals.items()}
        gammas[n - 1] = gamma  # keyed by context, of length n - 1
        probs = model.probs[n]
        for g, c in adjusted[n].items():
            h = g[:-1]
            p = (c - d[min(c, 3) - 1]) / totals[h]
            if n == 1:
                p += gamma[()] / len(vocab)
            else:
                p += gamma[h] * 10 ** model.probs[n - 1][g[1:]][0]
            probs[g] = (math.log10(p), 0.0)
        if n == 1:
            probs[(UNK,)] = (math.log10(gamma[()] / len(vocab)), 0.0)
            probs[(BOS,)] = (_LOG10_ZERO, 0.0)
    for n in range(1, order):
        for h, g in gammas[n].items():
            if h in model.probs[n]:
                model.probs[n][h] = (model.probs[n][h][0], math.log10(g))
    return model


def write_arpa(model: NgramModel, path: str | os.PathLike) -> None:
    """Write ``model`` as ARPA text (gzipped when ``path`` ends in ``.gz``), atomically."""
    path = str(path)
    tmp = path + ".tmp"
    opener = gzip.open if path.endswith(".gz") else open
    try:
        _write_arpa(model, tmp, opener)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # no half-written ARPA left beside the target
        raise


def _write_arpa(model: NgramModel, tmp: str, opener: Any) -> None:
    with opener(tmp, "wt", encoding="utf-8") as f:
        f.write("\\data\\\n")
        for n in range(1, model.order + 1):
            f.write(f"ngram {n}={len(model.probs[n])}\n")
        for n in range(1, model.order + 1):
            f.write(f"\n\\{n}-grams:\n")
            for g in sorted(model.probs[n]):
                p, bo = model.probs[n][g]
                line = f"{p:.6f}\t{' '.join(g)}"
                if n < model.order and bo != 0.0:
                    line += f"\t{bo:.6f}"
                f.write(line + "\n")
        f.write("\n\\end\\\n")


# ------------------------------------------------------------------------------------------ reading ARPA


@dataclass
class ArpaInfo:
    """What decoding needs to know about an ARPA file without loading all of it."""

    path: str
    order: int
    counts: list[int]
    unigrams: list[tuple[str, int]]  # (word, line number), in file order

    @property
    def words(self) -> list[str]:
        return [w for w, _ in self.unigrams if w not in (BOS, EOS, UNK)]

    @property
    def is_char_level(self) -> bool:
        """True for a character LM (every word one character or ``|``), as :func:`units` writes."""
        words = self.words
        return bool(words) and SPACE_SYMBOL in words and all(len(w) == 1 for w in words)


def _arpa_line_error(path: str, lineno: int, why: str) -> LMError:
    return LMError(f"{path}:{lineno}: not a valid ARPA file ({why})")


def read_arpa_info(path: str | os.PathLike) -> ArpaInfo:
    """Check an ARPA file's header and unigrams (with line numbers in errors) and return its vocabulary.

    Higher orders are left to KenLM, which checks them while loading; reading them here in Python would cost
    more than the decoding itself on LibriSpeech's 3-gram.
    """
    path = str(path)
    counts: list[int] = []
    unigrams: list[tuple[str, int]] = []
    with open_text(path) as f:
        lineno = 0
        try:
            state = "start"
            for lineno, raw_line in enumerate(f, 1):
                line = raw_line.strip()
                if state == "start":
                    if not line:
                        continue
                    if line != "\\data\\":
                        raise _arpa_line_error(path, lineno, f"expected \\data\\, found {line[:40]!r}")
                    state = "header"
                elif state == "header":
                    if line.startswith("ngram "):
                        key, _, value = line[6:].partition("=")
                        if not (key.strip().isdigit() and value.strip().isdigit() and int(key) == len(counts) + 1):
                            raise _arpa_line_error(path, lineno, f"bad count line {line!r}")
                        counts.append(int(value))
                    elif line == "\\1-grams:":
                        if not counts:
                            raise _arpa_line_error(path, lineno, "no 'ngram 1=N' line in the header")
                        state = "unigrams"
                    elif line:
                        raise _arpa_line_error(path, lineno, f"unexpected {line[:40]!r} in the header")
                elif state == "unigrams":
                    if not line:
                        continue
                    if line.startswith("\\"):
                        break
                    parts = line.split()
                    if len(parts) not in (2, 3):
                        raise _arpa_line_error(
                            path, lineno, f"a unigram line needs 'logprob word [backoff]', found {line[:60]!r}"
                        )
                    try:
                        [float(x) for x in parts[:1] + parts[2:]]
                    except ValueError:
                        raise _arpa_line_error(path, lineno, f"not a number in {line[:60]!r}") from None
                    unigrams.append((parts[1], lineno))
        except UnicodeDecodeError as e:
            raise LMError(f"{path}: not UTF-8 text ({e.reason} after line {lineno})") from None
    if not counts:
        raise LMError(f"{path}: not a valid ARPA file (no \\data\\ header)")
    if len(unigrams) != counts[0]:
        raise LMError(f"{path}: not a valid ARPA file (header says {counts[0]} unigrams, found {len(unigrams)})")
    return ArpaInfo(path, len(counts), counts, unigrams)


def load_arpa(path: str | os.PathLike) -> NgramModel:
    """Read a whole ARPA file into memory (for perplexity on small LMs and for tests)."""
    info = read_arpa_info(path)
    model = NgramModel(info.order, [{} for _ in range(info.order + 1)])
    n = 0
    with open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if line.startswith("\\") and line.endswith("-grams:"):
                n = int(line[1:].split("-")[0])
                continue
            if not line or n == 0 or line.startswith("\\"):
                continue
            parts = line.split()
            if len(parts) not in (n + 1, n + 2):
                raise _arpa_line_error(str(path), lineno, f"a {n}-gram line needs {n} words")
            try:
                p = float(parts[0])
                bo = float(parts[n + 1]) if len(parts) == n + 2 else 0.0
            except ValueError:
                raise _arpa_line_error(str(path), lineno, f"not a number in {line[:60]!r}") from None
            model.probs[n][tuple(parts[1 : n + 1])] = (p, bo)
    for k in range(1, info.order + 1):
        if len(model.probs[k]) != info.counts[k - 1]:
            raise LMError(
                f"{path}: not a valid ARPA file (header says {info.counts[k - 1]} {k}-grams, "
                f"found {len(model.probs[k])})"
            )
    return model
