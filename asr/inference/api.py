"""The Python API, as short as whisper's: ``asr.load_model(path).transcribe(audio)``.

::

    import asr

    model = asr.load_model("exp/synth/model.pt")          # device "auto": a GPU when there is one
    t = model.transcribe("a.wav")                          # one recording -> one Transcript
    print(t.text, [(w.word, w.start) for w in t.words])
    for t in model.transcribe(["a.wav", "b.flac"]):        # a list -> a list, in order
        print(t.path, t.text if t.ok else t.error)
    t = model.transcribe(samples, sample_rate=8000)        # numpy/torch samples, or the bytes of a file
    t = model.transcribe("a.wav", lm="lm.arpa", lm_params="lm_params.json")   # beam search with an n-gram LM
    t = model.transcribe("a.wav", hotwords={"aurora": 4.0})                    # favour words (docs/hotwords.md)

Why it looks like this: a model that transcribes is what users of whisper (``load_model("base").transcribe``),
NeMo (``model.transcribe([...])``) and SpeechBrain expect, and its defaults are those of ``asr transcribe`` (the
constants in :mod:`asr.inference.defaults`), so a result from Python and one from the shell agree. One
recording that cannot be read raises :class:`asr.errors.AudioError`; in a list, a failed recording is a result
with ``error`` set and the others go on, as the CLI goes on past a bad file. Decoding options are keyword
arguments turned into a decoder by :func:`asr.decoding.beam_search.build_decoder`, the function the CLI uses, and
the decoder is kept for the next call with the same options (loading an LM takes a while).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch

from asr.decoding.greedy import Decoder
from asr.errors import AudioError, UsageError
from asr.inference.defaults import DEFAULT_MAX_BATCH_SECONDS, DEFAULT_MAX_SEGMENT_SECONDS, DEFAULT_VAD
from asr.inference.segmentation import SegmentationConfig
from asr.inference.transcribe import (
    AudioInput,
    Transcript,
    as_inputs,
    with_hotwords,
)
from asr.inference.transcribe import transcribe as transcribe_all
from asr.model import file as model_file
from asr.model.file import LoadedModel

__all__ = ["Model", "load_model", "transcribe", "Transcript"]


@dataclass
class Model(LoadedModel):
    """A loaded model that transcribes. It is a :class:`asr.model.file.LoadedModel`, so it goes wherever one
    does (:func:`asr.evaluate`, :func:`asr.open_stream`, ``asr.serving``)."""

    _decoders: dict[tuple, Decoder] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_loaded(cls, loaded: LoadedModel) -> "Model":
        if isinstance(loaded, Model):
            return loaded
        return cls(**{f.name: getattr(loaded, f.name) for f in dataclasses.fields(LoadedModel)})

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def sample_rate(self) -> int:
        """The rate the model hears at; any other rate is resampled to it."""
        return self.model.sample_rate

    def decoder(
        self,
        lm: str | os.PathLike | None = None,
        *,
        lm_params: str | os.PathLike | None = None,
        lexicon: str | os.PathLike | None = None,
        beam_size: int | None = None,
        lm_weight: float | None = None,
        word_score: float | None = None,
        beam_threshold: float | None = None,
        hotwords: Any = None,
    ) -> Decoder | None:
        """The decoder these options ask for: None (greedy) without ``lm``, else a beam search over it, built as
        ``asr transcribe --lm ...`` builds it (weights from ``lm_params``, then the ones given) and reused.
        ``hotwords`` (a WORD<TAB>BOOST file, a {word: boost} mapping or a list of words; docs/hotwords.md) are
        favoured: by the LM search, or without ``lm`` by CTC word spotting over greedy decoding."""
        if lm is None and hotwords is not None:
            options_given = [k for k, v in {"lexicon": lexicon, "lm_params": lm_params}.items() if v is not None]
            if options_given:
                raise UsageError(f"{options_given[0]}= needs lm= (an n-gram LM file to decode with)")
            return with_hotwords(None, self.tokenizer, hotwords)
        options = {
            "lexicon": lexicon,
            "lm_params": lm_params,
            "beam_size": beam_size,
            "lm_weight": lm_weight,
            "word_score": word_score,
            "beam_threshold": beam_threshold,
        }
        if lm is None:
            given = [k for k, v in options.items() if v is not None]
            if given:
                raise UsageError(f"{given[0]}= needs lm= (an n-gram LM file to decode with)")
            return None
        from asr.decoding.beam_search import build_decoder

        key = (os.fspath(lm), *(os.fspath(v) if isinstance(v, os.PathLike) else v for v in options.values()))
        key += (
            None
            if hotwords is None
            else os.fspath(hotwords)
            if isinstance(hotwords, (str, os.PathLike))
            else repr(hotwords),
        )
        if key not in self._decoders:
            explicit = {k: options[k] for k in ("beam_size", "lm_weight", "word_score", "beam_threshold")}
            self._decoders[key] = build_decoder(self.tokenizer, lm, lexicon, lm_params, **explicit, hotwords=hotwords)
        return self._decoders[key]

    def transcribe(
        self,
        audio: AudioInput | Iterable[AudioInput],
        *,
        sample_rate: int | None = None,
        word_timestamps: bool = True,
        max_segment_seconds: float = DEFAULT_MAX_SEGMENT_SECONDS,
        vad: str = DEFAULT_VAD,
        max_batch_seconds: float = DEFAULT_MAX_BATCH_SECONDS,
        bf16: bool = False,
        lm: str | os.PathLike | None = None,
        lm_params: str | os.PathLike | None = None,
        lexicon: str | os.PathLike | None = None,
        beam_size: int | None = None,
        lm_weight: float | None = None,
        word_score: float | None = None,
        beam_threshold: float | None = None,
        hotwords: Any = None,
        no_speech_threshold: float | None = None,
        decoder: Decoder | None = None,
        num_threads: int | None = None,
        progress: bool = False,
    ) -> Transcript | list[Transcript]:
        """Transcribe ``audio``: a path, the bytes of an audio file, a 1-D numpy/torch array of samples (with
        ``sample_rate``), or a list of any of these.

        Returns one :class:`~asr.inference.transcribe.Transcript` for one recording (raising
        :class:`~asr.errors.AudioError` when it cannot be read), a list for a list (a failed one has ``error``
        set). Recordings of any length are cut at pauses (``vad``: energy, silero, webrtc or none) into pieces of
        at most ``max_segment_seconds``; segments and ``word_timestamps`` are in seconds from the recording's
        start. ``lm`` (ARPA or KenLM binary) switches to beam search; ``lm_params`` (``asr lm tune``'s JSON),
        ``lexicon``, ``beam_size``, ``lm_weight``, ``word_score`` and ``beam_threshold`` tune it, as the CLI's
        flags of the same names do. ``hotwords`` (a WORD<TAB>BOOST file, a {word: boost} mapping or a list of
        words) are favoured, as ``--hotwords`` does (docs/hotwords.md). ``decoder`` passes a ready decoder
        instead. ``no_speech_threshold`` drops segments whose ``no_speech_prob`` is above it (as
        ``--no-speech-threshold``). ``num_threads`` sets torch's CPU threads for the call.
        """
        if decoder is not None and lm is not None:
            raise UsageError("give decoder= or lm=, not both")
        if decoder is not None:
            decoder = with_hotwords(decoder, self.tokenizer, hotwords)
        else:
            decoder = self.decoder(
                lm,
                lm_params=lm_params,
                lexicon=lexicon,
                beam_size=beam_size,
                lm_weight=lm_weight,
                word_score=word_score,
                beam_threshold=beam_threshold,
                hotwords=hotwords,
            )
        inputs, single = as_inputs(audio, sample_rate)
        results = transcribe_all(  # hotwords are in ``decoder`` already
            self,
            inputs,
            max_batch_seconds,
            num_threads,
            bf16,
            decoder,
            SegmentationConfig(max_segment_seconds=max_segment_seconds),
            vad,
            word_timestamps,
            progress,
            no_speech_threshold=no_speech_threshold,
        )
        if single:
            if results[0].error is not None:
                raise AudioError(results[0].error)
            return results[0]
        return results


def load_model(path: str | os.PathLike, device: str | torch.device = "auto") -> Model:
    """Load a ``model.pt`` written by ``asr train`` onto ``device`` (``auto``: a GPU when there is one, as every
    command's ``--device`` defaults to)."""
    return Model.from_loaded(model_file.load_model(path, device))


def transcribe(
    model: LoadedModel, audio: AudioInput | Iterable[AudioInput], **options: Any
) -> Transcript | list[Transcript]:
    """``model.transcribe(audio, **options)`` for any loaded model (whisper's ``whisper.transcribe(model, audio)``);
    see :meth:`Model.transcribe`."""
    return Model.from_loaded(model).transcribe(audio, **options)
