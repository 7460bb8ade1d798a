"""Hotwords: soft boosting of words the user expects (names, jargon), also ones the model or the LM never saw.

A hotword list is a text file, one ``WORD<TAB>BOOST`` per line (``BOOST`` may be left out: :data:`DEFAULT_BOOST`;
``#`` starts a comment). A boost is in natural-log units of the decoder's score: how much less probable than the
alternative the hotword may be and still win. Two mechanisms, chosen by the decoder:

* **With a word LM** (flashlight's lexicon search, :class:`asr.decoding.beam_search.BeamSearchDecoder`), words the
  lexicon lacks are added to it, and a wrapper around the LM adds ``BOOST`` (divided by the LM weight, which the
  search multiplies it by) to the hotword's LM score wherever it is proposed; a word the LM does not know gets
  the score of the LM's rarest word before the boost, not KenLM's near-impossible unknown-word score.
* **Greedy and lexicon-free decoding**: a CTC word-spotting pass over the posteriors, after NeMo's CTC-WS
  (Andrusenko & Laptev, "Fast context-biasing for CTC and transducer ASR models with CTC-based word spotter",
  arXiv 2406.07096). For every hotword, a CTC alignment that may start and end on any frame finds the stretch
  of audio where the model best "says" the word (one dynamic programme over all hotwords' states at once); where
  that alignment's log-probability plus ``BOOST`` beats the decoder's best path over the same frames, the
  decoded words on those frames are replaced by the hotword. Candidates are taken best first and never overlap;
  a candidate must cover most of every word it replaces, so a short hotword cannot swallow a long word.

Recall of the boosted words and the WER on the rest, with and without a list, are in docs/hotwords.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from asr.data.tokenizer import Tokenizer, normalize_text
from asr.decoding.greedy import greedy_ids
from asr.errors import HotwordsError  # noqa: F401  (re-exported: raised here, caught as asr.ASRError)

if TYPE_CHECKING:
    import torch

DEFAULT_BOOST = 5.0
MIN_COVER = 0.8  # a spotted word must cover at least this share of the frames of each decoded word it replaces


@dataclass(frozen=True)
class Hotword:
    text: str  # normalised, as it is printed
    boost: float
    ids: tuple[int, ...]  # the spelling in the model's tokens (spaces included, for a phrase)


def read_hotwords(path: str | os.PathLike) -> dict[str, float]:
    """``WORD<TAB>BOOST`` lines -> {word: boost}; a bad line is an error naming ``path:line``."""
    path = str(path)
    out: dict[str, float] = {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise HotwordsError(f"{path}: hotword list not found") from None
    except UnicodeDecodeError as e:
        raise HotwordsError(f"{path}: not UTF-8 text ({e.reason})") from None
    for lineno, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        word, _, boost = line.partition("\t")
        word = word.strip()
        try:
            value = float(boost) if boost.strip() else DEFAULT_BOOST
        except ValueError:
            raise HotwordsError(f"{path}:{lineno}: boost {boost.strip()!r} is not a number (WORD<TAB>BOOST)") from None
        if not np.isfinite(value) or value < 0:
            raise HotwordsError(f"{path}:{lineno}: boost {value} must be a finite number >= 0")
        if not normalize_text(word):
            raise HotwordsError(f"{path}:{lineno}: no word on the line")
        out[word] = value
    if not out:
        raise HotwordsError(f"{path}: the hotword list is empty")
    return out


def as_hotwords(
    hotwords: str | os.PathLike | Mapping[str, float] | Sequence[str], tokenizer: Tokenizer, where: str = "hotwords"
) -> list[Hotword]:
    """A file path, a {word: boost} mapping or a list of words (default boost) -> spelled :class:`Hotword`\\ s."""
    if isinstance(hotwords, (str, os.PathLike)):
        where, mapping = str(hotwords), read_hotwords(hotwords)
    elif isinstance(hotwords, Mapping):
        mapping = {str(k): float(v) for k, v in hotwords.items()}
    else:
        mapping = {str(w): DEFAULT_BOOST for w in hotwords}
    out = []
    for word, boost in mapping.items():
        text = normalize_text(word)
        bad = tokenizer.oov_chars(text)
        if not text or bad:
            raise HotwordsError(f"{where}: hotword {word!r} has characters the model cannot emit ({', '.join(bad)})")
        ids = tuple(tokenizer.encode(text))
        if not ids:
            raise HotwordsError(f"{where}: hotword {word!r} spells to nothing in this model's tokens")
        out.append(Hotword(text, float(boost), ids))
    if not out:
        raise HotwordsError(f"{where}: no hotwords")
    return out


@dataclass
class Spotted:
    word: Hotword
    start: int  # first frame of its first token
    end: int  # last frame of its last token
    margin: float  # its alignment score + boost - the best path's score on the same frames (> 0 to be used)


class _States:
    """All hotwords' CTC states side by side (blank-augmented, without the leading blank): state 0 of each word is
    its first token, odd states are the blanks between tokens, the last state its last token."""

    def __init__(self, words: Sequence[Hotword], blank: int):
        labels, owner, first, skip, last = [], [], [], [], []
        for k, w in enumerate(words):
            base = len(labels)
            for i, tok in enumerate(w.ids):
                if i:
                    labels.append(blank)
                    owner.append(k)
                    first.append(False)
                    skip.append(False)
                labels.append(tok)
                owner.append(k)
                first.append(i == 0)
                # token -> token (skipping the blank between) unless they are the same token
                skip.append(i > 0 and w.ids[i - 1] != tok)
            last.append(len(labels) - 1)
            assert labels[base] == w.ids[0]
        self.labels = np.array(labels, dtype=np.int64)
        self.first = np.array(first, dtype=bool)
        self.skip = np.array(skip, dtype=bool)
        self.last = np.array(last, dtype=np.int64)
        self.step = ~self.first  # every state but a word's first continues from the state before it


def spot(log_probs: np.ndarray, words: Sequence[Hotword], blank: int = 0) -> list[Spotted]:
    """Every (hotword, end frame) whose best CTC alignment ending there beats the best path on its frames once
    boosted; the caller picks among overlapping ones. ``log_probs`` is one utterance's (T, V)."""
    lp = np.asarray(log_probs, dtype=np.float64)
    n_frames = lp.shape[0]
    if n_frames == 0 or not words:
        return []
    st = _States(words, blank)
    best_cum = np.concatenate([[0.0], np.cumsum(lp.max(axis=1))])
    emit = lp[:, st.labels]  # (T, S)
    neg = -np.inf
    alpha = np.full(len(st.labels), neg)
    start = np.zeros(len(st.labels), dtype=np.int64)
    boosts = np.array([w.boost for w in words])
    found: list[Spotted] = []
    for t in range(n_frames):
        stay, stay_start = alpha, start
        prev = np.concatenate([[neg], alpha[:-1]])
        prev_start = np.concatenate([[0], start[:-1]])
        prev = np.where(st.step, prev, neg)
        prev2 = np.concatenate([[neg, neg], alpha[:-2]])
        prev2_start = np.concatenate([[0, 0], start[:-2]])
        prev2 = np.where(st.skip, prev2, neg)
        fresh = np.where(st.first, 0.0, neg)  # a word may start on any frame
        cands = np.stack([stay, prev, prev2, fresh])
        starts = np.stack([stay_start, prev_start, prev2_start, np.full_like(start, t)])
        pick = cands.argmax(axis=0)
        cols = np.arange(len(st.labels))
        alpha = cands[pick, cols] + emit[t]
        start = starts[pick, cols]
        ends = alpha[st.last]
        s = start[st.last]
        margin = ends + boosts - (best_cum[t + 1] - best_cum[s])
        for k in np.nonzero(margin > 0)[0]:
            found.append(Spotted(words[k], int(s[k]), t, float(margin[k])))
    return found


@dataclass
class _Word:
    text: str
    first: int  # frame of its first token
    last: int  # frame of its last token


def _words(tokens: Sequence[int], frames: Sequence[int], tokenizer: Tokenizer) -> list[_Word]:
    """Decoded tokens (with the frame each starts on) grouped into words with their frame spans."""
    sep = tokenizer.word_separator_id
    vocab = getattr(tokenizer, "vocab", None)
    groups: list[list[tuple[int, int]]] = []
    for tok, frame in zip(tokens, frames):
        if sep is not None and tok == sep:
            groups.append([])
            continue
        starts_word = sep is None and vocab is not None and str(vocab[tok]).startswith("\u2581")
        if not groups or starts_word:
            groups.append([])
        groups[-1].append((tok, frame))
    out = []
    for g in groups:
        if g:
            text = tokenizer.decode([t for t, _ in g]).strip()
            if text:
                out.append(_Word(text, g[0][1], g[-1][1]))
    return out


def apply_spotted(words: list[_Word], spotted: list[Spotted]) -> tuple[list[str], list[Spotted]]:
    """Replace the decoded words under each accepted hotword (best margin first, no overlaps, each replaced word
    mostly covered); returns the new words and the accepted spots."""
    accepted: list[Spotted] = []
    for c in sorted(spotted, key=lambda c: -c.margin):
        if any(c.start <= a.end and a.start <= c.end for a in accepted):
            continue
        under = [w for w in words if w.first <= c.end and w.last >= c.start]
        if any(_cover(w, c) < MIN_COVER for w in under):
            continue
        accepted.append(c)
    out: list[tuple[int, str]] = []
    for w in words:
        if not any(w.first <= a.end and w.last >= a.start for a in accepted):
            out.append((w.first, w.text))
    out += [(a.start, a.word.text) for a in accepted]
    return [text for _, text in sorted(out, key=lambda x: x[0])], accepted


def _cover(w: _Word, c: Spotted) -> float:
    span = w.last - w.first + 1
    return (min(w.last, c.end) - max(w.first, c.start) + 1) / span


class HotwordDecoder:
    """A :class:`asr.decoding.greedy.Decoder` that runs ``base`` (greedy when None, or any decoder whose
    ``decode`` gives hypotheses with tokens and frames, like the lexicon-free beam search) and then the
    word-spotting pass (module docstring)."""

    def __init__(self, tokenizer: Tokenizer, hotwords: Any, base: Any = None):
        self.tokenizer = tokenizer
        self.hotwords = (
            hotwords
            if isinstance(hotwords, list) and all(isinstance(h, Hotword) for h in hotwords)
            else (as_hotwords(hotwords, tokenizer))
        )
        self.base = base
        self.last_spotted: list[Spotted] = []  # of the last utterance (tests, and docs/hotwords.md's figures)

    def info(self) -> dict[str, Any]:
        base = getattr(self.base, "info", None)
        info = base() if base else {"name": "greedy"}
        return {**info, "hotwords": len(self.hotwords), "hotword_method": "ctc-word-spotting"}

    def decode_one(self, log_probs: np.ndarray) -> str:
        lp = np.asarray(log_probs, dtype=np.float32)
        if self.base is not None and hasattr(self.base, "decode_one"):
            h = self.base.decode_one(lp)
            tokens, frames = h.tokens, h.frames
        else:
            import torch

            t = torch.from_numpy(lp)[None]
            tokens = greedy_ids(t, torch.tensor([lp.shape[0]]), self.tokenizer.blank_id)[0]
            frames = _token_frames(lp.argmax(axis=1), self.tokenizer.blank_id)
        words = _words(tokens, frames, self.tokenizer)
        texts, self.last_spotted = apply_spotted(words, spot(lp, self.hotwords, self.tokenizer.blank_id))
        return " ".join(texts)

    def __call__(self, log_probs: "torch.Tensor", lengths: "torch.Tensor") -> list[str]:
        lp = log_probs.detach().float().cpu().numpy()
        return [self.decode_one(lp[i, :n]) for i, n in enumerate(lengths.cpu().tolist())]


def _token_frames(best: np.ndarray, blank: int) -> list[int]:
    """The frame each greedy token starts on (best path, repeats merged, blanks dropped)."""
    keep = np.ones(len(best), dtype=bool)
    keep[1:] = best[1:] != best[:-1]
    keep &= best != blank
    return np.nonzero(keep)[0].tolist()
