"""Streaming recognition: text while the audio is still arriving, in chunks of any size.

Two recognisers, one interface (``accept(samples) -> Partial``, then ``finish() -> Final``):

* :class:`StreamingRecognizer`, exact and incremental, for forward-only models (``model.bidirectional: false``)
  whose features are normalised frame by frame (``features.normalize: global`` or ``none``). Each stage keeps
  just the context its next output needs: the STFT the samples of a frame's window that have arrived (starting
  with the zeros that the offline ``torch.stft(center=True, pad_mode="constant")`` puts before sample 0), each
  conv layer the input frames its kernel still has to cover, each recurrent layer its state. So the log-probs
  of a stream equal the offline ones, and so does the text, however the audio is chunked; an output frame
  waits only for the conv front-end's lookahead (one frame per conv layer), the STFT's half window and the
  model's look-ahead layer (``model.lookahead_frames`` output frames, held back until their future has arrived).
  With ``endpoint_silence_s`` it also closes a segment at each pause (see :class:`StreamingRecognizer`), so a
  live stream gives lines of text instead of one line that grows for ever.
* :class:`SegmentedRecognizer` for every other model (bidirectional, or per-utterance normalisation, which
  needs the whole utterance's statistics): :class:`EnergyEndpointer` cuts the stream at pauses and each segment
  is decoded offline when it closes, so text appears a pause after it is spoken. The endpointer is a stand-in
  with the same job as the voice-activity detector of the long-form transcription work, and can be swapped.

:func:`open_stream` picks the recogniser a model allows; the ``*_chunks`` functions turn files, raw PCM on a
pipe and a microphone into chunks at the model's rate.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterable, Iterator

import numpy as np
import torch

from asr.data.audio import audio_info, iter_frames
from asr.decoding.greedy import Decoder, GreedyDecoder
from asr.errors import StreamingError  # noqa: F401  (re-exported: raised here, caught as asr.ASRError)
from asr.model.file import LoadedModel

log = logging.getLogger(__name__)

RecurrentState = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None


# The rules that close a segment at a pause: no new token in the best path ("blank"), or quiet audio ("energy").
# A segment's ``reason`` is one of them, "max length" (the longest segment allowed) or "end" (of the stream).
ENDPOINT_RULES = ("blank", "energy")


@dataclass
class Segment:
    """A closed stretch of the stream: its final text and where it lies in the stream (seconds)."""

    text: str
    start: float
    end: float
    reason: str  # "blank" (no new letter), "energy" (quiet audio), "max length" or "end" (of the stream)

    def to_dict(self) -> dict:
        return {"text": self.text, "start": round(self.start, 3), "end": round(self.end, 3), "reason": self.reason}


@dataclass
class Partial:
    """What has been recognised so far; ``text`` may still change as more audio arrives.

    ``text`` is the whole stream's: the closed segments' texts and then the open one's (``open_text``), joined
    by spaces. ``closed`` lists the segments this call closed (their text is settled).
    """

    text: str
    samples: int  # audio samples received, at the model's rate
    frames: int  # CTC frames emitted so far
    sample_rate: int = 16000
    open_text: str = ""  # the open segment's text: what a live display shows on its last line
    closed: list[Segment] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.samples / self.sample_rate


@dataclass
class Final(Partial):
    """The result once the stream has ended; ``log_probs`` (T', vocab) when the recogniser was asked to keep them.

    ``segments`` are all of the stream's segments, the last one closed by the end of the stream (``closed``
    holds that one alone); ``text`` is their texts joined by spaces.
    """

    log_probs: torch.Tensor | None = None
    segments: list[Segment] = field(default_factory=list)


def lookahead_note(loaded: LoadedModel) -> str:
    """The latency a model's look-ahead adds to a stream, in words: what ``--stream`` and the server state."""
    model = loaded.model
    k = model.dims.lookahead_frames
    ms = 1000 * model.lookahead_seconds
    if not k:
        return "look-ahead 0 frames (0 ms added latency)"
    return f"look-ahead {k} frame{'s' if k > 1 else ''} of {1000 * model.frame_seconds:g} ms ({ms:g} ms added latency)"


def exact_streaming_problem(loaded: LoadedModel) -> str | None:
    """Why ``loaded`` cannot be streamed exactly (None when it can)."""
    model = loaded.model
    if model.dims.bidirectional:
        return "the model is bidirectional (each output depends on the audio after it)"
    if model.feature_config.normalize == "per_utterance":
        return "the model normalises features per utterance (statistics of the whole utterance)"
    return None


def _to_float_audio(samples: np.ndarray) -> torch.Tensor:
    """1-D float32 tensor in [-1, 1]: int16 PCM is scaled as soundfile scales it when reading a file."""
    a = np.asarray(samples)
    if a.ndim != 1:
        raise StreamingError(f"audio chunks must be 1-D (mono samples), got shape {a.shape}")
    if a.dtype == np.int16:
        a = a.astype(np.float32) / 32768.0
    elif not np.issubdtype(a.dtype, np.floating):
        raise StreamingError(f"audio chunks must be float or int16 samples, got {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        raise StreamingError("audio chunk contains NaN or infinite samples")
    return torch.from_numpy(a)


class _FeatureStream:
    """Samples -> normalised log-mel frames, framed exactly as the offline centred STFT frames the whole signal.

    Frame t covers stream samples [t*hop - n_fft/2, t*hop + n_fft/2); the zeros before sample 0 are in the
    buffer from the start, and the zeros after the last sample are added by ``finish``.
    """

    def __init__(self, model: torch.nn.Module):
        self.logmel = model.features
        c = self.logmel.config
        self.n_fft, self.hop, self.pad = c.n_fft, c.hop_length, c.n_fft // 2
        self.device = model.device
        self.buffer = torch.zeros(self.pad, device=self.device)  # starts at stream position next*hop - pad
        self.next = 0  # index of the next frame to emit
        self.received = 0

    def push(self, audio: torch.Tensor) -> torch.Tensor:
        self.received += audio.numel()
        self.buffer = torch.cat([self.buffer, audio.to(self.device)])
        return self._frames(self._ready())

    def finish(self) -> torch.Tensor:
        self.buffer = torch.cat([self.buffer, torch.zeros(self.pad, device=self.device)])
        total = self.received // self.hop + 1  # LogMel.output_lengths
        return self._frames(total - self.next)

    def _ready(self) -> int:
        n = self.buffer.numel()
        return (n - self.n_fft) // self.hop + 1 if n >= self.n_fft else 0

    def _frames(self, k: int) -> torch.Tensor:
        if k <= 0:
            return torch.zeros(1, 0, self.logmel.n_mels, device=self.device)
        span = self.buffer[: (k - 1) * self.hop + self.n_fft]
        feats = self.logmel.normalize_frames(self.logmel.log_mel(span[None], center=False))
        self.buffer = self.buffer[k * self.hop :]
        self.next += k
        return feats


class _ConvStream:
    """One conv layer of the front-end: output j needs input frames j*s-1, j*s, j*s+1 (zero outside 0..T-1)."""

    def __init__(self, frontend: torch.nn.Module, index: int):
        self.frontend, self.index = frontend, index
        self.stride = frontend.time_strides[index]
        self.out_channels = frontend.convs[index].out_channels
        self.buffer: torch.Tensor | None = None  # (1, C, n, F), starting at input frame next*stride - 1
        self.next = 0  # index of the next output frame
        self.received = 0  # input frames received

    def push(self, x: torch.Tensor) -> torch.Tensor:
        """x: (1, C, k, F) new input frames -> (1, C', m, F') outputs that no later input can change."""
        if self.buffer is None:
            self.buffer = x.new_zeros(1, x.shape[1], 1, x.shape[3])  # the left padding
        self.received += x.shape[2]
        self.buffer = torch.cat([self.buffer, x], dim=2)
        return self._outputs()

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        out = self.push(x)
        total = (self.received - 1) // self.stride + 1  # ConvFrontEnd.output_lengths
        if self.next < total:
            self.buffer = torch.cat([self.buffer, torch.zeros_like(self.buffer[:, :, :1])], dim=2)  # right padding
            out = torch.cat([out, self._outputs()], dim=2)
        return out

    def _outputs(self) -> torch.Tensor:
        n = self.buffer.shape[2]  # frames next*s-1 .. next*s-1+n-1 are here; output next+m needs up to (next+m)*s+1
        m = (n - 3) // self.stride + 1 if n >= 3 else 0
        if m <= 0:
            return self.buffer.new_zeros(1, self.out_channels, 0, (self.buffer.shape[3] - 1) // 2 + 1)
        out = self.frontend.layer_without_time_padding(self.index, self.buffer[:, :, : (m - 1) * self.stride + 3])
        self.buffer = self.buffer[:, :, m * self.stride :]
        self.next += m
        return out


class StreamingRecognizer:
    """Exact incremental recognition with a forward-only model: the stream's result equals the offline result.

    ``accept`` takes mono samples at the model's rate (float in [-1, 1], or int16 PCM), in chunks of any size,
    and returns the best-path text so far; ``finish`` flushes the context the model was waiting for (the STFT's
    half window, the conv lookahead and the look-ahead layer's frames) and returns the final text. ``decoder``
    (e.g. a language-model beam search) decodes each segment's log-probs when it closes instead of best path;
    the partial results stay best path.

    Endpointing (``endpoint_silence_s``; None, the default, keeps the whole stream one segment, equal to offline
    decoding of all of it): a segment with text is closed after ``endpoint_silence_s`` of pause, decided after
    each ``accept`` by either of two rules (``endpoint_rules``):

    * ``blank``: the best path has emitted no new token for that long (every frame since the segment's last
      letter was blank, or that letter repeated): the model's own judgement that nobody is speaking, which holds
      in whatever noise it was trained on and needs no level thresholds;
    * ``energy``: :class:`EnergyEndpointer` (10-ms frames, 12 dB over a tracked noise floor) heard that long a
      quiet stretch after speech: the rule that still works when a weak model prints letters into the silence.

    A segment that reaches ``max_segment_s`` is closed wherever it is (reason ``max length``; a segment without
    text is restarted silently, so minutes of silence do not pile up in the recurrent state). Closing a segment
    flushes it as ``finish`` would, at the end of the audio received so far, and starts the next from a fresh
    state: so each segment's result equals offline decoding of its own stretch of audio (tested), and a model
    trained on single utterances hears each utterance as it was trained to.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        decoder: Decoder | None = None,
        keep_log_probs: bool = False,
        endpoint_silence_s: float | None = None,
        endpoint_rules: Iterable[str] = ENDPOINT_RULES,
        max_segment_s: float = 30.0,
    ):
        problem = exact_streaming_problem(loaded)
        if problem:
            raise StreamingError(
                f"cannot stream this model exactly: {problem}; "
                "train with model.bidirectional=false and features.normalize=global "
                "(recipes/synth/conf_streaming.yaml), or use SegmentedRecognizer"
            )
        self.endpoint_rules = tuple(endpoint_rules)
        _check_endpointing(endpoint_silence_s, self.endpoint_rules, max_segment_s)
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        self.sample_rate = self.model.sample_rate
        self.decoder = decoder
        self.keep_log_probs = keep_log_probs
        self.endpoint_silence_s = endpoint_silence_s
        self.max_segment_samples = int(max_segment_s * self.sample_rate)
        if endpoint_silence_s is not None:
            self.endpoint_frames = max(1, math.ceil(endpoint_silence_s / self.model.frame_seconds - 1e-9))
        self.reset()

    def reset(self) -> None:
        """Forget the stream so far; the next ``accept`` starts a new utterance."""
        self.received = 0
        self.frames = 0
        self.segments: list[Segment] = []
        self.kept: list[torch.Tensor] = []  # log-probs of the closed segments, when kept
        self.energy = None
        if self.endpoint_silence_s is not None and "energy" in self.endpoint_rules:
            self.energy = EnergyEndpointer(self.sample_rate, min_silence_s=self.endpoint_silence_s, max_segment_s=1e9)
        self.finished = False
        self._open_segment(0)

    def _open_segment(self, start: int) -> None:
        encoder = self.model.encoder
        self.features = _FeatureStream(self.model)
        self.convs = [_ConvStream(encoder.frontend, i) for i in range(len(encoder.frontend.convs))]
        self.states: list[RecurrentState] = [None] * len(encoder.layers)
        self.held: torch.Tensor | None = None  # the look-ahead layer's input frames still waiting for their future
        self.segment_start = start
        self.ids: list[int] = []
        self.previous_id: int | None = None
        self.segment_kept: list[torch.Tensor] = []
        self.since_token = 0  # frames since the best path last emitted a token
        self.quiet = False  # the energy endpointer closed a stretch of speech in this segment
        self.flushed = False

    @torch.inference_mode()
    def accept(self, samples: np.ndarray) -> Partial:
        if self.finished:
            raise StreamingError("accept() after finish(): call reset() to start a new stream")
        audio = _to_float_audio(samples)
        closed: list[Segment] = []
        if audio.numel():
            self.received += audio.numel()
            feats = self.features.push(audio)
            if feats.shape[1]:
                self._encode(feats, final=False)
            if self.energy is not None and self.energy.push(audio.numpy()):
                self.quiet = True
            reason = self._endpoint()
            if reason:
                closed.append(self._close(reason))
        return self._result(Partial, closed)

    @torch.inference_mode()
    def finish(self) -> Final:
        """The final result. An empty stream gives empty text (no frames) rather than the model's view of silence."""
        if self.finished:
            raise StreamingError("finish() called twice: call reset() to start a new stream")
        self.finished = True
        last = self._close("end") if self.received > self.segment_start or not self.segments else None
        final = self._result(Final, [last] if last else [])
        final.segments = list(self.segments)
        if self.keep_log_probs:
            final.log_probs = torch.cat(self.kept, dim=0) if self.kept else torch.zeros(0, len(self.tokenizer))
        return final

    def _endpoint(self) -> str | None:
        """Why the open segment should close now (None: it stays open)."""
        if self.endpoint_silence_s is None:
            return None
        length = self.received - self.segment_start
        if not self.ids and length >= self.max_segment_samples:
            self._flush()  # its last frames, as offline decoding of its audio would end
        if not self.ids:
            if length >= self.max_segment_samples:
                self._restart()
            self.quiet = False  # quiet after a noise that gave no text closes nothing
            return None
        if "blank" in self.endpoint_rules and self.since_token >= self.endpoint_frames:
            return "blank"
        if self.quiet:
            return "energy"
        if length >= self.max_segment_samples:
            return "max length"
        return None

    def _restart(self) -> None:
        """A fresh state for the next segment (or for one that has heard nothing worth text)."""
        self.kept.extend(self.segment_kept)
        self._open_segment(self.received)
        if self.energy is not None:
            self.energy.cut()

    def _close(self, reason: str) -> Segment:
        """Flush the open segment at the audio received so far, as offline decoding of its audio would end."""
        self._flush()
        text = self.tokenizer.decode(self.ids)
        if self.decoder is not None and self.segment_kept:
            log_probs = torch.cat(self.segment_kept, dim=0)
            text = self.decoder(log_probs[None], torch.tensor([log_probs.shape[0]]))[0]
        segment = Segment(text, self.segment_start / self.sample_rate, self.received / self.sample_rate, reason)
        self.segments.append(segment)
        if reason == "end":
            self.kept.extend(self.segment_kept)
        else:
            self._restart()
        return segment

    def _flush(self) -> None:
        """The open segment's last frames: the STFT's, the convs' and the look-ahead's, with the zeros past the end
        of its audio that offline decoding pads with (once per segment)."""
        if self.features.received and not self.flushed:
            self._encode(self.features.finish(), final=True)
        self.flushed = True

    def _result(self, cls: type, closed: list[Segment]) -> Partial:
        open_text = "" if self.finished else self.tokenizer.decode(self.ids)
        text = " ".join(t for t in [*(s.text for s in self.segments), open_text] if t)
        return cls(text, self.received, self.frames, self.sample_rate, open_text=open_text, closed=closed)

    def _encode(self, feats: torch.Tensor, final: bool) -> None:
        """(1, k, n_mels) new feature frames through the front-end, the recurrent layers, the look-ahead and the
        head."""
        x = feats.unsqueeze(1)  # (1, 1, k, F)
        for conv in self.convs:
            x = conv.finish(x) if final else conv.push(x)
        if self.convs:
            b, c, t, f = x.shape
            x = x.permute(0, 2, 1, 3).reshape(b, t, c * f)
        else:
            x = x.squeeze(1)
        encoder = self.model.encoder
        if x.shape[1]:
            for i, layer in enumerate(encoder.layers):
                x, self.states[i] = layer.forward_step(x, self.states[i])
        elif not final or encoder.lookahead is None:
            return
        else:
            x = x.new_zeros(1, 0, encoder.head.in_features)  # nothing new, but the held frames are due
        if encoder.lookahead is not None:
            x = self._lookahead(x, final)
        if x.shape[1] == 0:
            return
        log_probs = torch.log_softmax(encoder.head(x).float(), dim=-1)[0]  # (k', vocab)
        self.frames += log_probs.shape[0]
        if self.keep_log_probs or self.decoder is not None:
            self.segment_kept.append(log_probs.cpu())
        self._greedy(log_probs.argmax(dim=-1).tolist())

    def _lookahead(self, x: torch.Tensor, final: bool) -> torch.Tensor:
        """The look-ahead layer on (1, n, C) new frames: outputs for the held frames whose k future frames have
        arrived; at the end, the zeros that offline decoding puts past the last frame stand in for the future."""
        k = self.model.encoder.lookahead.frames
        held = x if self.held is None else torch.cat([self.held, x], dim=1)
        if final:
            held = torch.cat([held, held.new_zeros(1, k, held.shape[2])], dim=1)
        ready = held.shape[1] - k
        if ready <= 0:
            self.held = held
            return held[:, :0]
        out = self.model.encoder.lookahead.step(held)
        self.held = held[:, ready:]
        return out

    def _greedy(self, best: list[int]) -> None:
        """Best path, one frame at a time: the same collapse as :func:`asr.decoding.greedy.greedy_ids` over the whole."""
        blank = self.tokenizer.blank_id
        for i in best:
            if i != self.previous_id and i != blank:
                self.ids.append(i)
                self.since_token = 0
            else:
                self.since_token += 1
            self.previous_id = i


def _check_endpointing(silence_s: float | None, rules: tuple[str, ...], max_segment_s: float) -> None:
    if silence_s is not None and not (math.isfinite(silence_s) and silence_s > 0):
        raise StreamingError(f"endpoint silence must be a positive number of seconds, got {silence_s}")
    unknown = [r for r in rules if r not in ENDPOINT_RULES]
    if unknown or not rules:
        raise StreamingError(f"endpoint rules must be some of {', '.join(ENDPOINT_RULES)}, got {', '.join(rules)}")
    if not (math.isfinite(max_segment_s) and max_segment_s > 0):
        raise StreamingError(f"the longest segment must be a positive number of seconds, got {max_segment_s}")


class EnergyEndpointer:
    """Finds speech stretches in a stream by the short-time energy of 10-ms frames.

    A frame is speech when it is ``margin_db`` above a noise floor that follows the quietest frames at once and
    louder ones slowly, and above ``min_level_db`` (dBFS). The floor starts at ``initial_floor_db`` or the first
    frame's level, whichever is lower, so speech from the very first sample is heard as speech. A segment that has had speech closes after
    ``min_silence_s`` without any, or at ``max_segment_s`` wherever it is. Cheap, and good enough for pauses
    between utterances in clean or steadily noisy audio; a trained voice-activity detector does better in
    changing noise.
    """

    def __init__(
        self,
        sample_rate: int,
        min_silence_s: float = 0.5,
        max_segment_s: float = 20.0,
        margin_db: float = 12.0,
        min_level_db: float = -55.0,
        floor_rise_db_per_s: float = 3.0,
        initial_floor_db: float = -50.0,
    ):
        self.frame = max(1, sample_rate // 100)
        self.min_silence = max(1, int(round(min_silence_s * 100)))
        self.max_frames = max(1, int(round(max_segment_s * 100)))
        self.margin_db, self.min_level_db = margin_db, min_level_db
        self.floor_rise = floor_rise_db_per_s / 100
        self.floor: float | None = None
        self.initial_floor = initial_floor_db
        self.pending = np.zeros(0, dtype=np.float32)
        self.position = 0  # stream samples framed so far
        self.segment_frames = 0
        self.silence_run = 0
        self.speech: tuple[int, int] | None = None  # (first, end) sample of the open segment's speech

    def push(self, audio: np.ndarray) -> list[tuple[int, int, int]]:
        """Feed samples; returns (speech start, speech end, cut) stream positions of each segment that closed."""
        self.pending = np.concatenate([self.pending, audio])
        closed = []
        n = self.pending.shape[0] // self.frame
        for k in range(n):
            span = self._step(self.pending[k * self.frame : (k + 1) * self.frame])
            self.position += self.frame
            if span is not None:
                closed.append((*span, self.position))
        self.pending = self.pending[n * self.frame :]
        return closed

    def cut(self) -> None:
        """Forget the open segment (its owner closed it by other means); the noise floor stays as it is."""
        self.speech = None
        self.segment_frames = self.silence_run = 0

    def _step(self, frame: np.ndarray) -> tuple[int, int] | None:
        level = 10.0 * np.log10(float(np.mean(frame.astype(np.float64) ** 2)) + 1e-10)
        if self.floor is None or level < self.floor:
            self.floor = min(level, self.initial_floor) if self.floor is None else level
        else:
            self.floor += min(self.floor_rise, level - self.floor)
        is_speech = level > max(self.floor + self.margin_db, self.min_level_db)
        self.segment_frames += 1
        self.silence_run = 0 if is_speech else self.silence_run + 1
        if is_speech:
            first = self.speech[0] if self.speech else self.position
            self.speech = (first, self.position + self.frame)
        if self.speech and (self.silence_run >= self.min_silence or self.segment_frames >= self.max_frames):
            span, self.speech = self.speech, None
            self.segment_frames = self.silence_run = 0
            return span
        if self.speech is None and self.segment_frames >= self.max_frames:
            self.segment_frames = 0
        return None


class SegmentedRecognizer:
    """Per-segment recognition for models that cannot stream exactly (bidirectional, per-utterance features).

    The endpointer closes a segment at a pause; its speech, with ``margin_s`` of audio either side (about the
    silence around a training utterance: per-utterance statistics are thrown off by long silences), is then
    decoded offline, exactly as ``asr transcribe`` would decode that stretch as a file, and its text is
    appended to the result. Partial results therefore grow a segment at a time, a pause (``min_silence_s``)
    after the speech. Audio between segments is not decoded, so a silent stream costs nothing.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        decoder: Decoder | None = None,
        min_silence_s: float = 0.5,
        max_segment_s: float = 20.0,
        margin_s: float = 0.15,
    ):
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        self.sample_rate = self.model.sample_rate
        self.decoder = decoder or GreedyDecoder(self.tokenizer)
        self.endpointer_args = dict(min_silence_s=min_silence_s, max_segment_s=max_segment_s)
        self.margin = int(margin_s * self.sample_rate)
        self.reset()

    def reset(self) -> None:
        self.endpointer = EnergyEndpointer(self.sample_rate, **self.endpointer_args)
        self.audio = np.zeros(0, dtype=np.float32)  # the stream from position ``start`` on
        self.start = 0
        self.received = 0
        self.segments: list[Segment] = []
        self.frames = 0
        self.finished = False

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.segments]

    def accept(self, samples: np.ndarray) -> Partial:
        if self.finished:
            raise StreamingError("accept() after finish(): call reset() to start a new stream")
        audio = _to_float_audio(samples).numpy()
        self.audio = np.concatenate([self.audio, audio])
        self.received += audio.shape[0]
        closed = []
        for first, end, cut in self.endpointer.push(audio):
            closed += self._decode(first - self.margin, end + self.margin, "energy")
            self._forget(cut)
        if self.endpointer.speech is None:
            self._forget(self.received - self.margin)  # keep only what the next segment's margin needs
        return Partial(self._text(), self.received, self.frames, self.sample_rate, closed=closed)

    def finish(self) -> Final:
        if self.finished:
            raise StreamingError("finish() called twice: call reset() to start a new stream")
        self.finished = True
        closed = []
        if self.endpointer.speech is not None:
            closed = self._decode(self.endpointer.speech[0] - self.margin, self.received, "end")
        elif not self.segments and self.audio.shape[0] == self.received:
            # A short clip the endpointer found no speech in (or too steady to tell): decoded whole, as offline.
            closed = self._decode(0, self.received, "end")
        return Final(
            self._text(), self.received, self.frames, self.sample_rate, closed=closed, segments=list(self.segments)
        )

    def _text(self) -> str:
        return " ".join(t for t in self.texts if t)

    def _forget(self, position: int) -> None:
        drop = min(max(0, position - self.start), self.audio.shape[0])
        self.audio, self.start = self.audio[drop:], self.start + drop

    @torch.inference_mode()
    def _decode(self, first: int, end: int, reason: str) -> list[Segment]:
        lo, hi = max(0, first - self.start), max(0, end - self.start)
        segment = self.audio[lo:hi]
        if segment.shape[0] == 0:
            return []
        audio = torch.from_numpy(np.ascontiguousarray(segment))[None].to(self.model.device)
        log_probs, lengths = self.model(audio, torch.tensor([segment.shape[0]], device=self.model.device))
        self.frames += int(lengths[0])
        sr = self.sample_rate
        closed = Segment(
            self.decoder(log_probs.float(), lengths)[0], (self.start + lo) / sr, (self.start + hi) / sr, reason
        )
        self.segments.append(closed)
        return [closed]


Recognizer = StreamingRecognizer | SegmentedRecognizer


def open_stream(
    loaded: LoadedModel,
    decoder: Decoder | None = None,
    keep_log_probs: bool = False,
    endpoint_silence_s: float | None = None,
) -> tuple[Recognizer, str | None]:
    """The exact recogniser when the model allows it, else the per-segment one with a note saying why.

    ``endpoint_silence_s``: the pause that closes a segment (None: the exact recogniser keeps one segment, the
    per-segment one its default 0.5 s)."""
    problem = exact_streaming_problem(loaded)
    if problem is None:
        return StreamingRecognizer(loaded, decoder, keep_log_probs, endpoint_silence_s=endpoint_silence_s), None
    _check_endpointing(endpoint_silence_s, ENDPOINT_RULES, 1.0)
    kwargs = {} if endpoint_silence_s is None else {"min_silence_s": endpoint_silence_s}
    return SegmentedRecognizer(loaded, decoder, **kwargs), (
        f"{problem}: streaming per segment, each decoded when a pause closes it (no partial text within a segment)"
    )


# Audio sources: each yields 1-D float32 chunks at the model's rate.


def file_chunks(path: str | os.PathLike, sample_rate: int, chunk_samples: int) -> Iterator[np.ndarray]:
    """A file read block by block (any format soundfile reads), down-mixed and resampled as it goes."""
    info = audio_info(path, max_seconds=0)  # AudioError naming the file when it is missing, empty or not audio
    block = max(1, int(round(chunk_samples * info.sample_rate / sample_rate)))
    resampler = StreamResampler(info.sample_rate, sample_rate)
    for data in iter_frames(path, block):  # to the decoder's end: a FLAC of unknown length too
        out = resampler(data.mean(axis=1) if data.shape[1] > 1 else data[:, 0])
        if out.size:
            yield out
    tail = resampler(np.zeros(0, dtype=np.float32), last=True)
    if tail.size:
        yield tail


def pcm_chunks(
    stream: BinaryIO,
    rate: int,
    sample_rate: int,
    chunk_samples: int,
    warn: Callable[[str], None] = log.warning,
    name: str = "standard input",
) -> Iterator[np.ndarray]:
    """Raw signed 16-bit little-endian mono PCM at ``rate`` from a pipe, as it arrives.

    Chunks come as soon as the pipe has data (``read1``), so a live source (``arecord``) is heard without
    waiting for a full chunk. A stream that ends in the middle of a sample loses that byte, with a warning.
    """
    want = max(2, 2 * int(round(chunk_samples * rate / sample_rate)))
    read = getattr(stream, "read1", stream.read)
    resampler = StreamResampler(rate, sample_rate)
    carry = b""
    while True:
        data = read(want)
        if not data:
            break
        data = carry + data
        usable = len(data) - len(data) % 2
        carry = data[usable:]
        if usable:
            out = resampler(np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / 32768.0)
            if out.size:
                yield out
    if carry:
        warn(f"{name}: ended in the middle of a 16-bit sample; the odd trailing byte is ignored")
    tail = resampler(np.zeros(0, dtype=np.float32), last=True)
    if tail.size:
        yield tail


def mic_chunks(sample_rate: int, chunk_samples: int) -> Iterator[np.ndarray]:
    """The default microphone through ``sounddevice`` (optional extra ``asr-rnn-ctc[mic]``), until interrupted."""
    try:
        import sounddevice as sd
    except ImportError:
        raise StreamingError("--mic needs the optional package sounddevice: pip install 'asr-rnn-ctc[mic]'") from None
    except OSError as e:  # the package is there but PortAudio is not
        raise StreamingError(
            f"--mic: sounddevice cannot load PortAudio ({e}); on Debian/Ubuntu: apt install libportaudio2"
        ) from None
    try:
        with sd.InputStream(samplerate=sample_rate, channels=1, dtype="float32", blocksize=chunk_samples) as mic:
            while True:
                data, overflowed = mic.read(chunk_samples)
                if overflowed:
                    log.warning("microphone: input overflowed (recognition is slower than real time here)")
                yield data[:, 0].copy()
    except sd.PortAudioError as e:
        raise StreamingError(f"--mic: {e}") from None


def paced(chunks: Iterable[np.ndarray], sample_rate: int) -> Iterator[np.ndarray]:
    """Chunks no faster than real time: what a live source would deliver."""
    start, sent = time.monotonic(), 0
    for chunk in chunks:
        sent += chunk.shape[0]
        delay = start + sent / sample_rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield chunk


class StreamResampler:
    """soxr's streaming resampler, or nothing at all when the rates agree (so samples pass through untouched)."""

    def __init__(self, in_rate: int, out_rate: int):
        self.stream = None
        if in_rate != out_rate:
            import soxr

            self.stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")

    def __call__(self, audio: np.ndarray, last: bool = False) -> np.ndarray:
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        if self.stream is None:
            return audio
        return self.stream.resample_chunk(audio, last=last).astype(np.float32, copy=False)
