"""Transcribing audio files of any length with a trained model: cut at pauses, batched, stitched back in file time.

Each file is read twice in blocks, never whole: once for the voice-activity detector, once to cut out the windows
:func:`asr.inference.segmentation.plan_windows` chose. Windows from all files share batches (sorted by length, so little is
padding) up to ``max_batch_seconds`` of audio; memory is bounded by that and the window length, not by any file.
Each window's log-probs are decoded (greedy, or any :class:`asr.decoding.greedy.Decoder`) and aligned to word times
(:func:`asr.decoding.alignment.align_words`) with the window's start as offset, so segments and words carry times from the
start of the file. Results come back in input order, one per file, with ``error`` set for files that failed.

Audio can also be given in memory (:data:`AudioInput`): a numpy or torch array with its sample rate, or the bytes
of an encoded file. It is checked and converted to the model's rate when its turn comes, so a bad one fails alone,
as a bad file does, and then goes through the same cutting and batching.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence, Union

import numpy as np
import torch

from asr.data.audio import AudioError, audio_info, display_path, is_pipe, read_blocks, regular_file, resample
from asr.decoding.greedy import Decoder, GreedyDecoder
from asr.errors import UsageError
from asr.inference.defaults import DEFAULT_MAX_BATCH_SECONDS, DEFAULT_MAX_SEGMENT_SECONDS, DEFAULT_VAD  # noqa: F401
from asr.inference.segmentation import (
    SegmentationConfig,
    VoiceActivityDetector,
    Window,
    make_vad,
    plan_windows,
    speech_regions,
)
from asr.model.card import card_of, low_confidence_warning
from asr.model.file import LoadedModel
from asr.model.network import frame_seconds

# One recording: a file path, the bytes of an encoded file (wav/flac/ogg/...), or mono samples (numpy or torch,
# 1-D; float in [-1, 1], or int16/int32 PCM) with their ``sample_rate``.
AudioInput = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, torch.Tensor]


@dataclass
class Transcript:
    path: str
    text: str | None
    duration: float | None
    error: str | None = None
    segments: list[Any] = field(default_factory=list)  # asr.decoding.alignment.Segment, in file time
    warnings: list[str] = field(default_factory=list)  # about the audio: read in part, no length in the header
    # The model card's check: this recording's mean word confidence is far below the model's validation average
    # (asr.model.card.low_confidence_warning). Apart from ``warnings``: the audio was read whole, the model is unsure.
    low_confidence: str | None = None

    @property
    def ok(self) -> bool:
        """False when the audio could not be read (``error`` says why; ``text`` is None)."""
        return self.error is None

    @property
    def words(self) -> list[Any]:
        """Every word (:class:`asr.decoding.alignment.Word`: word, start, end, confidence) of every segment, in
        order; empty without word timestamps."""
        return [w for s in self.segments for w in s.words]

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able result (whisper's shape) that :func:`asr.inference.formats.write_result` renders; a
        failed input has an ``error`` key too."""
        out = {
            "path": display_path(self.path),  # text: a name that is not UTF-8 has its bytes as \\xNN
            "text": self.text,
            "duration": round(self.duration or 0.0, 3),
            "segments": [s.to_dict() for s in self.segments],
        }
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass
class InMemoryAudio:
    """Audio given in memory rather than as a file: encoded ``data`` (bytes), or ``samples`` at ``sample_rate``.
    ``label`` is what the result's ``path`` says."""

    label: str
    data: bytes | None = None
    samples: np.ndarray | None = None
    sample_rate: int | None = None

    def decode(self, target_rate: int) -> np.ndarray:
        """Mono float32 at ``target_rate``; :class:`AudioError` naming ``label`` for anything unusable."""
        if self.data is not None:
            import soundfile as sf

            if not self.data:
                raise AudioError(f"{self.label}: no audio (empty bytes)")
            try:
                audio, rate = sf.read(io.BytesIO(self.data), dtype="float32", always_2d=True)
            except Exception as e:  # libsndfile's errors are generic
                first = re.sub(r"^Error opening <[^>]*>: ", "", str(e).strip())  # libsndfile names the BytesIO
                first = first.splitlines()[0][:200] if first else type(e).__name__
                raise AudioError(f"{self.label}: not a readable audio file ({first})") from None
            samples = audio.mean(axis=1, dtype=np.float32) if audio.shape[1] > 1 else audio[:, 0]
        else:
            samples, rate = _as_mono_float(self.samples, self.label), int(self.sample_rate or 0)
        if samples.shape[0] == 0:
            raise AudioError(f"{self.label}: no audio samples")
        if not np.isfinite(samples).all():
            raise AudioError(f"{self.label}: audio contains NaN or infinite samples")
        return np.ascontiguousarray(resample(samples, int(rate), target_rate), dtype=np.float32)


def _as_mono_float(samples: Any, label: str) -> np.ndarray:
    """A 1-D float32 signal from a numpy array: floats as they are, int16/int32 PCM scaled to [-1, 1]."""
    a = np.asarray(samples)
    if a.ndim != 1:
        raise AudioError(
            f"{label}: expected a 1-D (mono) array of samples, got shape {tuple(a.shape)}; down-mix it "
            "(x.mean(axis=channel_axis)), or pass a list of 1-D arrays for several recordings"
        )
    if a.dtype == np.int16:
        return a.astype(np.float32) / 32768.0
    if a.dtype == np.int32:
        return a.astype(np.float32) / 2147483648.0
    if a.dtype.kind != "f":
        raise AudioError(f"{label}: samples of dtype {a.dtype} are not audio; give float, int16 or int32 samples")
    return a.astype(np.float32, copy=False)


def as_inputs(audio: AudioInput | Iterable[AudioInput], sample_rate: int | None = None) -> tuple[list[Any], bool]:
    """``audio`` as a list of paths and :class:`InMemoryAudio`, and whether it was one recording.

    A string or path is one file (never a sequence of characters); an array is one recording, bytes one
    encoded file; a list or tuple holds any mix of them. Arrays need ``sample_rate``.
    """

    def one(item: Any, label: str) -> Any:
        if isinstance(item, (str, os.PathLike)):
            return os.fspath(item)
        if isinstance(item, InMemoryAudio):
            return item
        if isinstance(item, (bytes, bytearray, memoryview)):
            return InMemoryAudio(f"bytes{label}", data=bytes(item))
        if isinstance(item, torch.Tensor):
            item = item.detach().cpu().numpy()
        if isinstance(item, np.ndarray):
            if sample_rate is None:
                raise UsageError(f"array{label}: give its sample rate (transcribe(x, sample_rate=16000))")
            if not 1000 <= int(sample_rate) <= 384000:
                raise UsageError(f"sample_rate {sample_rate}: not a usable sample rate (1000-384000 Hz)")
            return InMemoryAudio(f"array{label}", samples=item, sample_rate=int(sample_rate))
        raise UsageError(
            f"audio{label}: expected a file path, bytes, or a numpy/torch array of samples, got {type(item).__name__}"
        )

    if isinstance(audio, (str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, torch.Tensor, InMemoryAudio)):
        return [one(audio, "")], True
    if isinstance(audio, Iterable):
        return [one(item, f"[{i}]") for i, item in enumerate(audio)], False
    return [one(audio, "")], True


@contextlib.contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Run with ``num_threads`` torch threads (None: as they are), and put the setting back afterwards."""
    if num_threads is None:
        yield
        return
    if num_threads < 1:
        raise UsageError(f"num_threads must be at least 1, got {num_threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class _File:
    """One input on its way through: its windows, and their log-probs as batches deliver them."""

    index: int
    path: str  # a file, or the label of audio given in memory
    source: Any = None  # what is read: ``path``, or a temporary copy of a pipe
    memory: InMemoryAudio | None = None  # audio given in memory, decoded into ``audio`` when its turn comes
    windows: list[Window] = field(default_factory=list)
    log_probs: dict[int, torch.Tensor] = field(default_factory=dict)
    num_samples: int = 0
    speech: np.ndarray | None = None  # the detector's speech/non-speech flag per frame of ``speech_frame_s``
    speech_frame_s: float = 1.0
    regions: list[tuple[float, float]] | None = None  # the detector's speech regions (s), None without a detector
    progress_s: float = 0.0  # audio seconds of this file shown on the progress bar so far
    cut_done: bool = False
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    audio: np.ndarray | None = None  # samples already decoded at the model's rate (run_audio), else read from path

    @property
    def name(self) -> str:
        """``path`` as messages show it (bytes that are not UTF-8 as ``\\xNN``)."""
        return display_path(self.path)

    @property
    def complete(self) -> bool:
        return self.error is not None or (self.cut_done and len(self.log_probs) == len(self.windows))


def checked_no_speech_threshold(value: float | None) -> float | None:
    """``value`` if it is None or a probability, else the one-line error ``--no-speech-threshold`` gives."""
    if value is not None and not 0.0 <= value <= 1.0:
        raise UsageError(f"--no-speech-threshold must be a probability in [0, 1], got {value}")
    return value


class Transcriber:
    """A loaded model with its segmentation, decoder and batch size: call :meth:`run` on a list of paths."""

    def __init__(
        self,
        loaded: LoadedModel,
        max_batch_seconds: float = DEFAULT_MAX_BATCH_SECONDS,
        bf16: bool = False,
        decoder: Decoder | None = None,
        segmentation: SegmentationConfig | None = None,
        vad: str = DEFAULT_VAD,
        word_timestamps: bool = True,
        block_seconds: float = 30.0,
        no_speech_threshold: float | None = None,
    ):
        """``no_speech_threshold``: drop the segments whose ``no_speech_prob`` exceeds it (None: keep them all)."""
        self.no_speech_threshold = checked_no_speech_threshold(no_speech_threshold)
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        self.decoder = decoder or GreedyDecoder(self.tokenizer)
        # With a card that holds the validation set's confidence, every file's words are aligned (also for plain
        # text) so that a file far less confident than that is flagged (asr.model.card.low_confidence_warning).
        self.card = card_of(loaded.metadata)
        self.check_confidence = bool(((self.card or {}).get("confidence") or {}).get("mean"))
        self.config = segmentation or SegmentationConfig()
        self.vad: VoiceActivityDetector | None = make_vad(vad, self.model)
        self.max_batch_seconds = max(max_batch_seconds, self.config.max_segment_seconds)
        self.bf16, self.word_timestamps, self.block_seconds = bf16, word_timestamps, block_seconds
        self.sample_rate = self.model.sample_rate
        f = self.model.feature_config
        self.frame_samples = f.hop_length * self.model.dims.subsampling  # samples per CTC output frame
        self.frame_seconds = frame_seconds(f, self.model.dims)
        self.hop = f.hop_length
        self._pool: list[tuple[_File, int, np.ndarray]] = []
        self._pool_samples = 0
        self._progress = None

    def run(self, paths: Sequence[str | os.PathLike | InMemoryAudio], progress: bool = False) -> Iterator[Transcript]:
        """Transcripts of ``paths`` (files, or :class:`InMemoryAudio`) in input order, each as soon as it and all
        before it are done."""
        files = [
            _File(i, p.label, memory=p) if isinstance(p, InMemoryAudio) else _File(i, os.fspath(p))
            for i, p in enumerate(paths)
        ]
        if progress:
            from tqdm import tqdm

            total = sum(self._seconds(f) for f in files)
            self._progress = tqdm(
                total=round(total, 1),
                unit="s",
                desc="transcribing",
                file=sys.stderr,
                dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} audio s [{elapsed}<{remaining}]",
            )
        emitted = 0
        try:
            for f in files:
                self._cut(f)
                while emitted < len(files) and files[emitted].complete:
                    yield self._finish(files[emitted])
                    emitted += 1
            self._flush()
            for f in files[emitted:]:
                yield self._finish(f)
        finally:
            if self._progress is not None:
                self._progress.close()
                self._progress = None

    def run_audio(self, audio: np.ndarray, name: str) -> Transcript:
        """The transcript of one recording already decoded (mono float32 at the model's rate), labelled ``name``.

        For a caller that has decoded the audio itself, once, checking its own limits as it went (``asr serve``
        judges an upload's length from its decoded samples); the result is what :meth:`run` gives for a file
        holding that audio."""
        f = _File(0, name, audio=np.ascontiguousarray(audio, dtype=np.float32))
        self._cut(f)
        self._flush()
        return self._finish(f)

    def _blocks(self, f: _File) -> Iterator[np.ndarray]:
        if f.audio is not None:
            step = max(1, int(self.block_seconds * self.sample_rate))
            return (f.audio[i : i + step] for i in range(0, f.audio.shape[0], step))
        return read_blocks(f.source, self.sample_rate, self.block_seconds, f.warnings, name=f.name)

    def _seconds(self, f: _File) -> float:
        """``f``'s length as its header (or its array) says, for the progress bar."""
        if f.memory is not None and f.memory.samples is not None and f.memory.sample_rate:
            return len(f.memory.samples) / f.memory.sample_rate
        if f.audio is not None:
            return f.audio.shape[0] / self.sample_rate
        return 0.0 if f.memory is not None else _header_seconds(f.path)

    def _cut(self, f: _File) -> None:
        """Plan ``f``'s windows (first read) and queue their audio for the model (second read); a pipe
        (``<(cat a.wav)``, a FIFO) is copied to a temporary file first, since it can be read only once."""
        try:
            if f.memory is not None:
                f.audio = f.memory.decode(self.sample_rate)
            if f.audio is not None:
                self._cut_file(f)
            else:
                with regular_file(f.path) as source:
                    f.source = source
                    self._cut_file(f)
        except AudioError as e:
            f.error = str(e)
        f.cut_done = True

    def _cut_file(self, f: _File) -> None:
        """Both reads of one regular file (``f.source``)."""
        if f.audio is None:
            audio_info(f.source, name=f.name, max_seconds=0)  # missing/empty/unreadable files fail here, before work
        elif f.audio.shape[0] == 0:
            raise AudioError(f"{f.name}: no audio samples")
        if self.vad is None:
            f.num_samples = sum(b.shape[0] for b in self._blocks(f))
            probs, frame_s = None, 1.0
        else:
            counted = _Counted(self._blocks(f))
            probs, frame_s = self.vad.speech_probabilities(counted), self.vad.frame_seconds
            f.num_samples = counted.samples
        f.windows = plan_windows(probs, frame_s, f.num_samples, self.sample_rate, self.config, self.frame_samples)
        whole = f.windows == [Window(0, f.num_samples)]  # a clip of speech to its edges: normalised as training did
        if probs is not None:  # speech regions (short pauses bridged), as the detector frames them
            f.regions = speech_regions(probs, frame_s, self.config)
        if f.regions is not None and not whole:
            f.speech, f.speech_frame_s = np.zeros(len(probs), dtype=bool), frame_s
            for s, e in f.regions:
                f.speech[int(round(s / frame_s)) : int(round(e / frame_s))] = True
        f.warnings[:] = list(dict.fromkeys(f.warnings))  # the second read repeats the first's warnings
        self._queue_windows(f)
        f.warnings[:] = list(dict.fromkeys(f.warnings))

    def _queue_windows(self, f: _File) -> None:
        """Cut the planned windows out of a second block-wise read and hand them to the batcher."""
        pending = list(enumerate(f.windows))
        buf, buf_start = np.zeros(0, dtype=np.float32), 0
        blocks = self._blocks(f)
        while pending:
            k, w = pending[0]
            while buf_start + buf.shape[0] < w.end:
                block = next(blocks, None)
                if block is None:
                    break
                buf = np.concatenate([buf, block])
            start, end = w.start - buf_start, min(w.end - buf_start, buf.shape[0])
            self._add(f, k, buf[start:end].copy())
            pending.pop(0)
            keep_from = pending[0][1].start - buf_start if pending else buf.shape[0]
            keep_from = max(0, min(keep_from, buf.shape[0]))
            buf, buf_start = buf[keep_from:], buf_start + keep_from
        for _ in blocks:  # read to the end, so a break-off after the last window is still reported
            pass

    def _add(self, f: _File, k: int, audio: np.ndarray) -> None:
        self._pool.append((f, k, audio))
        self._pool_samples += audio.shape[0]
        if self._pool_samples >= self.max_batch_seconds * self.sample_rate:
            self._flush()

    def _flush(self) -> None:
        """Run the model on everything queued, in length-sorted batches of at most ``max_batch_seconds`` padded."""
        items = sorted(self._pool, key=lambda x: x[2].shape[0])
        self._pool, self._pool_samples = [], 0
        budget = self.max_batch_seconds * self.sample_rate
        batch: list[tuple[_File, int, np.ndarray]] = []
        for item in items:
            if batch and (len(batch) + 1) * item[2].shape[0] > budget:
                self._run_batch(batch)
                batch = []
            batch.append(item)
        if batch:
            self._run_batch(batch)

    @torch.inference_mode()
    def _run_batch(self, batch: list[tuple[_File, int, np.ndarray]]) -> None:
        lengths = torch.tensor([max(1, a.shape[0]) for _, _, a in batch], dtype=torch.long)
        padded = torch.zeros(len(batch), int(lengths.max()))
        for row, (_, _, a) in enumerate(batch):
            padded[row, : a.shape[0]] = torch.from_numpy(a)
        stats = self._speech_masks(batch, int(lengths.max()) // self.hop + 1)
        device = self.model.device
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=self.bf16):
            feats, feat_lens = self.model.features(
                padded.to(device), lengths.to(device), stats_mask=None if stats is None else stats.to(device)
            )
            log_probs, out_lens = self.model.encoder(feats, feat_lens)
        log_probs = log_probs.float().cpu()
        for row, ((f, k, a), n) in enumerate(zip(batch, out_lens.tolist())):
            f.log_probs[k] = log_probs[row, :n].clone()
            self._advance(f, a.shape[0] / self.sample_rate)

    def _advance(self, f: _File, seconds: float) -> None:
        if self._progress is not None and seconds > 0:
            f.progress_s += seconds
            self._progress.update(seconds)

    def _speech_masks(self, batch: list[tuple[_File, int, np.ndarray]], n_frames: int) -> torch.Tensor | None:
        """(B, n_frames) speech flags at the feature rate, so that a segment is normalised by its speech alone:
        a model trained on trimmed utterances mistakes the statistics of a segment padded with pause for
        different speech (measured in docs/transcription.md)."""
        if all(f.speech is None for f, _, _ in batch):
            return None
        out = torch.ones(len(batch), n_frames, dtype=torch.bool)
        for row, (f, k, _) in enumerate(batch):
            if f.speech is None:
                continue
            centres = (f.windows[k].start + np.arange(n_frames) * self.hop) / self.sample_rate
            idx = np.minimum((centres / f.speech_frame_s).astype(np.int64), len(f.speech) - 1)
            out[row] = torch.from_numpy(f.speech[idx]) if len(f.speech) else False
        return out

    def _finish(self, f: _File) -> Transcript:
        """Splice, decode and time-align ``f``'s windows into segments (log-probs are freed as they are used)."""
        if self._progress is not None:  # the pauses, and files that failed, count as done too
            self._advance(f, self._seconds(f) - f.progress_s)
        if f.memory is not None:
            f.audio = None  # audio given in memory is not kept once its windows are cut
        if f.error is not None:
            return Transcript(f.path, None, None, f.error, warnings=f.warnings)
        groups: list[list[int]] = []
        for k, w in enumerate(f.windows):
            if groups and f.windows[groups[-1][-1]].joins_next:
                groups[-1].append(k)
            else:
                groups.append([k])
        segments, confidences = [], []
        for group in groups:
            lp = self._splice(f, group)
            start = f.windows[group[0]].start / self.sample_rate
            end = min(f.windows[group[-1]].end, f.num_samples) / self.sample_rate
            seg_confidences: list[float] = []
            segment = self._segment(lp, start, end, seg_confidences, f.regions)
            if not segment.text:
                continue
            if self.no_speech_threshold is not None and segment.no_speech_prob > self.no_speech_threshold:
                continue  # the model itself says nothing was said here
            confidences.extend(seg_confidences)
            segments.append(segment)
        f.log_probs.clear()
        warning = low_confidence_warning(self.card, confidences) if self.check_confidence else None
        text = " ".join(s.text for s in segments)
        return Transcript(
            f.path,
            text,
            f.num_samples / self.sample_rate,
            segments=segments,
            warnings=f.warnings,
            low_confidence=f"{f.path}: {warning}" if warning else None,
        )

    def _splice(self, f: _File, group: list[int]) -> torch.Tensor:
        """One (T, V) log-prob sequence for windows that overlap: each pair meets in the middle of its overlap."""
        parts, take_from = [], 0
        for a, b in zip(group, group[1:]):
            wa, wb = f.windows[a], f.windows[b]
            mid = (wb.start + min(wa.end, f.num_samples)) // 2
            split = (mid - wa.start) // self.frame_samples  # frames of ``a`` before the splice
            parts.append(f.log_probs[a][take_from:split])
            take_from = split - (wb.start - wa.start) // self.frame_samples
        parts.append(f.log_probs[group[-1]][max(0, take_from) :])
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def _segment(
        self,
        log_probs: torch.Tensor,
        start: float,
        end: float,
        confidences: list[float] | None = None,
        regions: list[tuple[float, float]] | None = None,
    ):
        """Decode and align one stretch of log-probs; its words' confidences are added to ``confidences``, and
        word starts in a pause move to the detector's ``regions`` (:func:`snap_starts_to_speech`)."""
        from asr.decoding.alignment import AlignmentError, Segment, align_words, no_speech_probability

        text = self.decoder(log_probs[None], torch.tensor([log_probs.shape[0]]))[0].strip()
        words = []
        if text and (self.word_timestamps or self.check_confidence):
            try:
                words = align_words(log_probs, text, self.tokenizer, self.frame_seconds, offset=start)
            except AlignmentError:
                words = []
            if regions:
                words = snap_starts_to_speech(words, regions)
        if confidences is not None:
            confidences.extend(w.confidence for w in words)
        if not self.word_timestamps:
            words = []
        if words:
            start, end = max(start, words[0].start), min(end, max(words[-1].end, words[0].start))
        no_speech = no_speech_probability(log_probs, self.tokenizer.blank_id)
        return Segment(round(start, 3), round(end, 3), text, words, no_speech_prob=no_speech)


def snap_starts_to_speech(words: list, regions: list[tuple[float, float]]) -> list:
    """Words whose aligned start lies in a pause moved to where the detector's speech begins inside them.

    A CTC model emits a character's spike wherever its training data taught it to; one trained on utterances
    trimmed to their speech emits the first character on a segment's first frame, so the first word "started"
    at 0.00 s of every clip with a lead-in (docs/transcription.md, "Word times"). A word cannot start in a pause:
    when its start is outside every speech region and a region begins before its end, the start moves there.
    Starts inside speech are the alignment's and are left alone; ``words`` is changed in place and returned.
    """
    onsets = [s for s, _ in regions]
    for w in words:
        if any(s <= w.start < e for s, e in regions):
            continue
        later = [s for s in onsets if w.start < s < w.end]
        if later:
            w.start = float(later[0])
    return words


def with_hotwords(decoder: Decoder | None, tokenizer: Any, hotwords: Any) -> Decoder | None:
    """``decoder`` with ``hotwords`` favoured by the word-spotting pass (greedy when ``decoder`` is None)."""
    if hotwords is None:
        return decoder
    from asr.decoding.hotwords import HotwordDecoder

    if decoder is not None and not hasattr(decoder, "decode_one"):
        raise UsageError("hotwords= needs greedy decoding or a beam-search decoder (build_decoder(hotwords=...))")
    return HotwordDecoder(tokenizer, hotwords, base=decoder)


class _Counted:
    """Passes blocks through and counts their samples (the true length: headers can be wrong)."""

    def __init__(self, blocks: Iterator[np.ndarray]):
        self.blocks, self.samples = blocks, 0

    def __iter__(self) -> Iterator[np.ndarray]:
        for b in self.blocks:
            self.samples += b.shape[0]
            yield b


def _header_seconds(path: str) -> float:
    if is_pipe(path):  # its header would be read from the pipe, and lost to the transcription
        return 0.0
    try:
        return audio_info(path).duration
    except AudioError:
        return 0.0


def transcribe(
    loaded: LoadedModel,
    paths: AudioInput | Iterable[AudioInput],
    max_batch_seconds: float = DEFAULT_MAX_BATCH_SECONDS,
    num_threads: int | None = None,
    bf16: bool = False,
    decoder: Decoder | None = None,
    segmentation: SegmentationConfig | None = None,
    vad: str = DEFAULT_VAD,
    word_timestamps: bool = True,
    progress: bool = False,
    hotwords: Any = None,
    no_speech_threshold: float | None = None,
    sample_rate: int | None = None,
) -> list[Transcript]:
    """Transcribe recordings of any length, rate and channel count: files, or audio in memory (see
    :func:`as_inputs`; arrays need ``sample_rate``); one result per input, in input order, ``error`` set for
    inputs that cannot be read. ``bf16`` runs the encoder under bfloat16 autocast (features stay float32).
    ``decoder`` turns log-probs into text (default: greedy). ``num_threads`` sets torch's threads for this call
    (None: leave them). ``hotwords`` (a WORD<TAB>BOOST file, a {word: boost} mapping or a list of words) are
    favoured (:mod:`asr.decoding.hotwords`): by word spotting over greedy decoding, or pass
    ``decoder=build_decoder(..., hotwords=...)`` for an LM. ``no_speech_threshold`` drops segments whose
    ``no_speech_prob`` is above it. For one recording and LM options by name,
    :meth:`asr.inference.api.Model.transcribe`."""
    decoder = with_hotwords(decoder, loaded.tokenizer, hotwords)
    inputs, _ = as_inputs(paths, sample_rate)
    t = Transcriber(
        loaded,
        max_batch_seconds,
        bf16,
        decoder,
        segmentation,
        vad,
        word_timestamps,
        no_speech_threshold=no_speech_threshold,
    )
    with torch_threads(num_threads):
        return list(t.run(inputs, progress=progress))
