"""CTC beam search with an n-gram language model (KenLM, through the ``flashlight-text`` wheel).

Two modes, picked from the LM itself (:attr:`asr.decoding.ngram.ArpaInfo.is_char_level`):

* **lexicon** (a word LM, e.g. ``asr lm build --unit word`` or LibriSpeech's 3-gram): flashlight's
  ``LexiconDecoder`` walks a trie of the words' spellings, so it only ever emits words of the lexicon
  (``--lexicon``, default: the LM's own vocabulary), and asks the LM for a word's score once the word is
  complete. ``lm_weight`` (alpha) scales the LM's log-probability, ``word_score`` (beta) is added per word.
  A word is complete at the space after it: each spelling in the trie ends with the model's space, as in
  flashlight's and torchaudio's lexicons (``hello h e l l o |``), and the search closes the utterance with one
  made-up frame of certain space so that its last word ends too. Why the space: flashlight emits a word on the
  frame that enters its last token and moves to the trie's root, where the only token that can be held is the
  space. A word spelled without it could only end on its last letter's first frame, so a model that holds
  each letter over several frames with no blank after them ("ssiixxx eeiigghhttt") paid for the held frames
  as blanks or turned the word into a longer one ("six" -> "sixty"); and flashlight-text 0.0.7 let a word
  ending in a doubled letter end without the blank between ("bal" -> "ball"). See recipes/synth/RESULTS.md.
  Word-piece models have no space label; the decoder appends a made-up one, scored on every frame as the
  blank, so their words end on a blank after the last piece (the same failure, and fix, on the BPE model:
  test WER 4.48 % -> 1.35 %, greedy 1.68 %).
* **lexicon-free** (a character LM, ``asr lm build --unit char``): flashlight's ``LexiconFreeDecoder`` may
  emit any character sequence and scores *every character* with the LM as it is emitted. That is why a word
  LM cannot be used this way: it would be asked for the probability of "t", "h", "e" as words. With a
  character LM, ``word_score`` is the bonus for each space (flashlight's ``sil_score``), i.e. per word again.

The lexicon mode is the accurate one when the words are known (a closed vocabulary like the synth corpus, or
LibriSpeech's 200 000 words); the lexicon-free mode can spell new words. Measured figures for both are in
recipes/synth/RESULTS.md.

Decoding weights can come from a JSON file written by ``asr lm tune`` (``--lm-params``), which searches them on
a dev set after running the model once: :class:`CapturingDecoder` keeps each utterance's log-probs, and each
point of the search re-decodes them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import threading
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from asr.data.tokenizer import Tokenizer, normalize_text
from asr.decoding.hotwords import as_hotwords
from asr.decoding.ngram import SPACE_SYMBOL, UNK, LMError, open_text, read_arpa_info

if TYPE_CHECKING:  # torch is imported where it is used, so `asr --help` does not pay for it
    import torch

log = logging.getLogger(__name__)
KENLM_MAX_ORDER = 6  # flashlight-text's KenLM is compiled with KENLM_MAX_ORDER=6
_KENLM_MAGIC = b"mmap lm http://kheafield.com/code"
_SPECIAL = ("<s>", "</s>", "<unk>")  # sentence marks and the unknown word, in any case (LibriSpeech's LM: upper)


@dataclass
class BeamSearchOptions:
    """The decoder's knobs; ``asr lm tune`` searches ``lm_weight`` and ``word_score``."""

    beam_size: int = 32  # hypotheses kept per frame
    beam_threshold: float = 25.0  # drop hypotheses scoring this far below the best one
    lm_weight: float = 1.0  # alpha: scale of the LM log-probability (natural log, as flashlight uses)
    word_score: float = 0.0  # beta: added per emitted word (per space in lexicon-free mode)
    beam_size_token: int | None = None  # tokens tried per frame (None: all)
    unk_score: float = float("-inf")  # lexicon mode: score of a character run that is no word (-inf: never)

    def __post_init__(self) -> None:
        """Refuse values the search cannot use, whoever passes them (flags, a parameters file, Python): flashlight
        takes a beam of 0, a negative threshold or a NaN weight without a word and returns an empty transcript."""
        for name in ("beam_size", "beam_size_token"):
            value = getattr(self, name)
            if value is None and name == "beam_size_token":
                continue
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LMError(f"{_flag(name)} {value!r}: must be a whole number >= 1 (hypotheses kept per frame)")
            setattr(self, name, value)
        for name in ("beam_threshold", "lm_weight", "word_score", "unk_score"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise LMError(f"{_flag(name)} {value!r}: must be a number")
            value = float(value)
            if math.isnan(value) or (math.isinf(value) and not (name == "unk_score" and value < 0)):
                raise LMError(f"{_flag(name)} {value}: must be a finite number")
            if name == "beam_threshold" and value < 0:
                raise LMError(f"{_flag(name)} {value:g}: must be >= 0 (how far below the best a hypothesis may score)")
            setattr(self, name, value)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "BeamSearchOptions":
        """Read a parameters file as ``asr lm tune`` writes it (JSON; unknown keys are kept out, not fatal)."""
        path = str(path)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise LMError(f"{path}: LM parameters file not found") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise LMError(f"{path}: not a JSON LM parameters file ({e})") from None
        if not isinstance(data, dict):
            raise LMError(f"{path}: expected a JSON object with lm_weight, word_score, ...")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for k, v in values.items():
            if v is not None and not isinstance(v, (int, float)):
                raise LMError(f"{path}: {k} must be a number, got {v!r}")
        try:
            return cls(**values)
        except LMError as e:
            raise LMError(f"{path}: {e}") from None


def _flag(name: str) -> str:
    """How a field is named in a message: its command-line flag (``beam_size_token`` and ``unk_score`` have none)."""
    return f"--{name.replace('_', '-')}" if name in ("beam_size", "beam_threshold", "lm_weight", "word_score") else name


@dataclass
class Hypothesis:
    """The best beam of one utterance: its text, score, and (cheaply) its token path."""

    text: str
    score: float
    tokens: list[int] = field(default_factory=list)  # token ids, blanks and repeats removed
    frames: list[int] = field(default_factory=list)  # the frame where each of ``tokens`` starts


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """KenLM prints progress bars to the C-level stderr while loading; keep them off the user's terminal."""
    fd = 2  # the process's stderr, where C++ writes (sys.stderr may be a Python-level replacement)
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def is_kenlm_binary(path: str | os.PathLike) -> bool:
    """True for a KenLM binary (``build_binary``'s output, any file name), which KenLM loads as well as ARPA."""
    try:
        with open(path, "rb") as f:
            return f.read(len(_KENLM_MAGIC)) == _KENLM_MAGIC
    except OSError:
        return False


def _spell(word: str, tokenizer: Tokenizer, where: str) -> list[int]:
    """Token ids of ``word``'s normalised spelling; characters the model cannot emit are an error."""
    spelling = normalize_text(word)
    bad = sorted(set(tokenizer.oov_chars(spelling)) | ({" "} if " " in spelling else set()))
    if not spelling or bad:
        what = ", ".join(repr(c) for c in bad) if bad else "nothing after normalisation"
        raise LMError(f"{where}: word {word!r} has characters the model cannot emit ({what})")
    return tokenizer.word_ids(spelling)  # characters, or word pieces (the first marked as a word start)


def read_lexicon(path: str | os.PathLike, tokenizer: Tokenizer) -> list[tuple[str, list[int]]]:
    """(word, spelling token ids) per line of a lexicon file.

    A line is either ``WORD`` (spelled with its own characters, as LibriSpeech's ``librispeech-vocab.txt``) or
    ``WORD c h a r s`` (flashlight/torchaudio's format; ``|`` is the word boundary and is dropped: the decoder
    ends every spelling with the model's space itself). The word is kept as written, so it matches the LM's
    spelling (LibriSpeech's LM is upper case); the spelling is normalised like transcripts.
    """
    entries: list[tuple[str, list[int]]] = []
    with open_text(path) as f:
        try:
            for lineno, line in enumerate(f, 1):
                parts = line.split()
                if not parts:
                    continue
                word, chars = parts[0], [c for c in parts[1:] if c != SPACE_SYMBOL]
                where = f"{path}:{lineno}"
                if chars and any(len(c) != 1 for c in chars):
                    raise LMError(
                        f"{where}: spelling of {word!r} is not single characters (a phone lexicon? "
                        "a character model needs words spelled with its characters)"
                    )
                entries.append((word, _spell("".join(chars) if chars else word, tokenizer, where)))
        except UnicodeDecodeError as e:
            raise LMError(f"{path}: not UTF-8 text ({e.reason})") from None
    if not entries:
        raise LMError(f"{path}: the lexicon is empty")
    return entries


def _boosted_lm_class(fl: Any) -> type:
    global _BOOSTED_CLASS
    if _BOOSTED_CLASS is None:

        class Boosted(fl.LM):
            """KenLM's scores, plus each hotword's boost; a word the LM lacks scores as its rarest word."""

            def __init__(self, inner: Any, boosts: dict[int, float], added: set[int], rarest: float):
                fl.LM.__init__(self)
                self.inner, self.boosts, self.added, self.rarest = inner, boosts, added, rarest

            def start(self, start_with_nothing: bool) -> Any:
                return self.inner.start(start_with_nothing)

            def score(self, state: Any, token: int) -> Any:
                next_state, score = self.inner.score(state, token)
                if token in self.added:
                    score = self.rarest
                return next_state, score + self.boosts.get(token, 0.0)

            def finish(self, state: Any) -> Any:
                return self.inner.finish(state)

        _BOOSTED_CLASS = Boosted
    return _BOOSTED_CLASS


_BOOSTED_CLASS: type | None = None


class BeamSearchDecoder:
    """A :class:`asr.decoding.greedy.Decoder` that runs flashlight's CTC beam search with a KenLM n-gram.

    Safe to share between threads (``asr serve``'s pool): a flashlight decoder object keeps its beams in itself
    while it decodes, so each thread gets its own, built lazily over the shared LM and trie, which decoding only
    reads (every search starts its own tree of LM states). flashlight-text 0.0.7 holds the GIL for the whole
    search, so searches in different threads take turns anyway; the per-thread objects keep that an
    implementation detail rather than a correctness condition.

    >>> decoder = BeamSearchDecoder(loaded.tokenizer, "lm.arpa", options=BeamSearchOptions(lm_weight=1.5))
    >>> transcribe(loaded, ["a.wav"], decoder=decoder)
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        lm_path: str | os.PathLike,
        lexicon: str | os.PathLike | None = None,
        options: BeamSearchOptions | None = None,
        hotwords: Any = None,
    ):
        """``hotwords`` (lexicon mode; a file, a {word: boost} mapping or a list): words added to the lexicon when
        missing and boosted through the LM (:mod:`asr.decoding.hotwords`). Lexicon-free decoding boosts by word
        spotting instead: :func:`build_decoder` wraps the decoder for that."""
        try:
            from flashlight.lib.text import decoder as fl
            from flashlight.lib.text.decoder.kenlm import KenLM
            from flashlight.lib.text.dictionary import Dictionary
        except ImportError:
            raise LMError(
                "LM decoding needs the flashlight-text package: pip install 'asr-rnn-ctc[lm]' (or pip install flashlight-text)"
            ) from None

        self._fl, self._kenlm = fl, KenLM
        self.tokenizer = tokenizer
        self.options = options or BeamSearchOptions()
        self.lm_path = str(lm_path)
        self.lexicon_path = None if lexicon is None else str(lexicon)
        info = None if is_kenlm_binary(self.lm_path) else read_arpa_info(self.lm_path)
        if info is not None and info.order > KENLM_MAX_ORDER:
            raise LMError(
                f"{lm_path}: a {info.order}-gram, but the KenLM inside flashlight-text reads up to "
                f"{KENLM_MAX_ORDER}-grams (rebuild it with --order {KENLM_MAX_ORDER})"
            )
        self.mode = "lexicon-free" if (info is not None and info.is_char_level) else "lexicon"
        sep = tokenizer.word_separator_id
        # Lexicon mode ends each word with the space. Word pieces have no space label (a word starts with a "▁"
        # piece), so the decoder gets a made-up one, one index past the model's, scored on every frame as the
        # blank is: a word then ends on a blank after its last piece, however long that piece is held (ending on
        # the piece itself sent the search into longer words, as the character model's did before the space).
        self.virtual_separator = sep is None
        self.space_id = sep if sep is not None else len(tokenizer)
        self.word_end: list[int] = [self.space_id]
        if self.mode == "lexicon-free" and sep is None:
            raise LMError(
                f"{lm_path}: a character LM needs a character model; this model predicts word pieces (use a word LM)"
            )
        if self.mode == "lexicon-free":
            if lexicon is not None:
                raise LMError(f"{lm_path}: a character LM decodes without a lexicon; drop --lexicon, or pass a word LM")
            bad = [
                (w, line)
                for w, line in info.unigrams  # type: ignore[union-attr]
                if w.lower() not in _SPECIAL and w != SPACE_SYMBOL and w not in tokenizer.alphabet
            ]
            if bad:
                raise LMError(f"{lm_path}:{bad[0][1]}: character {bad[0][0]!r} is not one the model can emit")
            if hotwords is not None:
                raise LMError(f"{lm_path}: a character LM boosts hotwords by word spotting; use build_decoder()")
            self.hotword_boosts, self.hotwords_added = {}, []
            self.token_dict = Dictionary([SPACE_SYMBOL if t == " " else t for t in tokenizer.vocab])
            self.lm = self._load_kenlm(self.token_dict)
            self.trie = None
        else:
            if lexicon is not None:
                words = read_lexicon(lexicon, tokenizer)
            elif info is not None:
                words = [
                    (w, _spell(w, tokenizer, f"{lm_path}:{line}"))
                    for w, line in info.unigrams
                    if w.lower() not in _SPECIAL
                ]
            else:
                raise LMError(f"{lm_path}: a binary LM needs --lexicon (its vocabulary cannot be read here)")
            index: dict[str, int] = {}  # a word may have several spellings; each is a path to the same word
            for w, _ in words:
                index.setdefault(w, len(index))
            self.hotword_boosts, self.hotwords_added = {}, []
            if hotwords is not None:
                for h in as_hotwords(hotwords, tokenizer):
                    if " " in h.text:
                        raise LMError(f"hotword {h.text!r}: a word LM boosts single words; list them one per line")
                    known = next((w for w in index if normalize_text(w) == h.text), None)
                    if known is None:  # a new word: spelled into the lexicon, scored as the LM's rarest word
                        known = h.text
                        words.append((known, _spell(known, tokenizer, "hotwords")))
                        index[known] = len(index)
                        self.hotwords_added.append(known)
                    self.hotword_boosts[index[known]] = h.boost
            self.words = list(index)
            self.word_dict = Dictionary([*self.words, UNK])
            self.unk_word = len(self.words)
            self.lm = self._load_kenlm(self.word_dict)
            self.trie = fl.Trie(len(tokenizer) + self.virtual_separator, self.space_id)
            start = self.lm.start(False)
            added = {index[w] for w in self.hotwords_added}
            known_scores = [self.lm.score(start, i)[1] for w, i in index.items() if i not in added]
            self.rarest_score = min(known_scores) if known_scores else 0.0
            boosted = self._boosted_lm(self.options.lm_weight)
            for w, spelling in words:
                _, score = boosted.score(start, index[w])
                self.trie.insert(spelling + self.word_end, index[w], score)
            self.trie.smear(fl.SmearingMode.MAX)
        self._local = threading.local()
        self._search()  # options flashlight rejects fail here, at start-up, not at the first utterance

    def _search(self) -> Any:
        """This thread's flashlight decoder."""
        decoder = getattr(self._local, "decoder", None)
        if decoder is None:
            decoder = self._local.decoder = self._make_decoder(self.options)
        return decoder

    def info(self) -> dict[str, Any]:
        """What ``asr serve``'s ``/healthz`` says about this decoder (file names only, not their folders)."""
        o = self.options
        return {
            "name": "beam-search",
            "mode": self.mode,
            "lm": os.path.basename(self.lm_path),
            "lexicon": os.path.basename(self.lexicon_path) if self.lexicon_path else None,
            "beam_size": o.beam_size,
            "beam_threshold": o.beam_threshold,
            "lm_weight": o.lm_weight,
            "word_score": o.word_score,
            **({"hotwords": len(self.hotword_boosts), "hotword_method": "lm-boost"} if self.hotword_boosts else {}),
        }

    def _boosted_lm(self, lm_weight: float) -> Any:
        """The LM, or (with hotwords) a wrapper adding each hotword's boost, in units of the search's score."""
        if self.mode != "lexicon" or not self.hotword_boosts:
            return self.lm
        if lm_weight <= 0:
            log.warning("hotwords have no effect with lm_weight %g: the boost is added through the LM", lm_weight)
            return self.lm
        # Kept here: flashlight holds the LM through C++ only, and a Python subclass that Python no longer
        # references loses its methods ("pure virtual function LM::start").
        cache = self.__dict__.setdefault("_boosted_lms", {})
        if lm_weight not in cache:
            added = {self.words.index(w) for w in self.hotwords_added}
            boosts = {i: b / lm_weight for i, b in self.hotword_boosts.items()}
            cache[lm_weight] = _boosted_lm_class(self._fl)(self.lm, boosts, added, self.rarest_score)
        return cache[lm_weight]

    def _load_kenlm(self, usr_dict: Any) -> Any:
        try:
            with _quiet_stderr():
                return self._kenlm(self.lm_path, usr_dict)
        except RuntimeError as e:
            # KenLM's message: "<source location> threw <Exception> because `<check>'.\n<what it means>"
            lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
            reason = lines[1] if len(lines) > 1 else (lines[0].rsplit(" threw ", 1)[-1] if lines else "unreadable")
            raise LMError(f"{self.lm_path}: KenLM cannot load this LM ({reason})") from None

    def _make_decoder(self, o: BeamSearchOptions) -> Any:
        fl = self._fl
        tokens = len(self.tokenizer)
        beam_tokens = o.beam_size_token or tokens
        if self.mode == "lexicon-free":
            opts = fl.LexiconFreeDecoderOptions(
                o.beam_size, beam_tokens, o.beam_threshold, o.lm_weight, o.word_score, False, fl.CriterionType.CTC
            )
            return fl.LexiconFreeDecoder(opts, self.lm, self.space_id, self.tokenizer.blank_id, [])
        opts = fl.LexiconDecoderOptions(
            o.beam_size,
            beam_tokens,
            o.beam_threshold,
            o.lm_weight,
            o.word_score,
            o.unk_score,
            0.0,
            False,
            fl.CriterionType.CTC,
        )
        return fl.LexiconDecoder(
            opts,
            self.trie,
            self._boosted_lm(o.lm_weight),
            self.space_id,
            self.tokenizer.blank_id,
            self.unk_word,
            [],
            False,
        )

    def with_options(self, **changes: Any) -> "BeamSearchDecoder":
        """The same LM and lexicon with other weights (cheap: nothing is reloaded); used by the tuner."""
        clone = object.__new__(BeamSearchDecoder)
        clone.__dict__.update(self.__dict__)
        clone.options = BeamSearchOptions(**{**asdict(self.options), **changes})
        clone._local = threading.local()
        clone._search()
        return clone

    def decode_one(self, log_probs: np.ndarray) -> Hypothesis:
        """Beam search over one utterance's (T, V) float32 log-probs."""
        emissions = np.ascontiguousarray(log_probs, dtype=np.float32)
        t, v = emissions.shape
        if t == 0:
            return Hypothesis("", 0.0)
        if self.virtual_separator:
            blank = self.tokenizer.blank_id
            emissions = np.ascontiguousarray(np.concatenate([emissions, emissions[:, blank : blank + 1]], axis=1))
            v += 1
        if self.mode == "lexicon" and self.word_end:
            emissions = np.concatenate([emissions, self._end_frame(v)])
        results = self._search().decode(emissions.ctypes.data, emissions.shape[0], v)
        if not results:
            return Hypothesis("", float("-inf"))
        best = results[0]
        # ``best.tokens`` holds one token per frame, framed by a start and an end entry (the made-up last frame
        # is dropped here too)
        path = list(best.tokens)[1 : t + 1]
        tokens, frames, prev = [], [], self.tokenizer.blank_id
        for frame, tok in enumerate(path):
            if tok != prev and tok != self.tokenizer.blank_id and 0 <= tok < len(self.tokenizer):
                tokens.append(tok)
                frames.append(frame)
            prev = tok
        if self.mode == "lexicon":
            text = " ".join(normalize_text(self.words[w]) for w in best.words if 0 <= w < len(self.words))
        else:
            text = self.tokenizer.decode(tokens)
        return Hypothesis(text, best.score, tokens, frames)

    def _end_frame(self, v: int) -> np.ndarray:
        """One frame where the space is certain: every hypothesis must end the word it is in, or fall behind."""
        frame = np.full((1, v), -1e4, dtype=np.float32)  # finite: a beam with no word to end still gives a result
        frame[0, self.word_end[0]] = 0.0
        return frame

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[Hypothesis]:
        lp = log_probs.detach().float().cpu().numpy()
        return [self.decode_one(lp[i, :n]) for i, n in enumerate(lengths.cpu().tolist())]

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        return [h.text for h in self.decode(log_probs, lengths)]


def build_decoder(
    tokenizer: Tokenizer,
    lm: str | os.PathLike,
    lexicon: str | os.PathLike | None = None,
    lm_params: str | os.PathLike | None = None,
    *,
    beam_size: int | None = None,
    lm_weight: float | None = None,
    word_score: float | None = None,
    beam_threshold: float | None = None,
    hotwords: Any = None,
) -> Any:
    """A beam-search decoder over ``lm``: weights from ``lm_params`` (``asr lm tune``'s JSON), then the ones given.

    The one place where transcribe, evaluate, serve and the Python API turn LM options into a decoder, so that
    they agree on defaults and on which option wins.
    """
    explicit = {
        "beam_size": beam_size,
        "lm_weight": lm_weight,
        "word_score": word_score,
        "beam_threshold": beam_threshold,
    }
    options = BeamSearchOptions.from_file(lm_params) if lm_params else BeamSearchOptions()
    options = BeamSearchOptions(**{**asdict(options), **{k: v for k, v in explicit.items() if v is not None}})
    probe_mode = None
    if hotwords is not None:
        info = None if is_kenlm_binary(lm) else read_arpa_info(lm)
        probe_mode = "lexicon-free" if (info is not None and info.is_char_level) else "lexicon"
    decoder = BeamSearchDecoder(tokenizer, lm, lexicon, options, hotwords if probe_mode == "lexicon" else None)
    log.info(
        "LM decoding (%s) with %s: beam %d, lm_weight %.3g, word_score %.3g",
        decoder.mode,
        lm,
        options.beam_size,
        options.lm_weight,
        options.word_score,
    )
    if probe_mode == "lexicon-free":
        from asr.decoding.hotwords import HotwordDecoder

        return HotwordDecoder(tokenizer, hotwords, base=decoder)
    if decoder.hotwords_added:
        log.info("hotwords added to the lexicon: %s", ", ".join(decoder.hotwords_added))
    return decoder
