"""Cutting a recording of any length into windows the model can take at once, at the pauses between speech.

The model is a bidirectional RNN over whole utterances: memory and time grow with the input, and it was trained
on utterances of seconds, not hours. So a recording is cut where nobody speaks:

1. a voice-activity detector gives one speech probability per short frame (:func:`make_vad`: silero-vad, webrtcvad
   or the energy of the model's own log-mel; docs/transcription.md says which won on measurement and why);
2. :func:`plan_windows` turns those probabilities into windows of at most ``max_segment_seconds``: speech
   regions (pauses shorter than ``min_silence_seconds`` do not split them), padded, then cut at the longest pause
   inside any region that is still too long. Stretches with no pause at all are split into overlapping windows
   (``joins_next``) whose CTC outputs are spliced back together in the middle of the overlap, so no speech is
   ever dropped and no word is cut in two by a hard edge.

Silence outside the windows is never transcribed: a file of silence or steady noise, long or short, gives no window
and an empty transcript. A file that fits in one window is one window from its first speech frame to its last, with
``trim_pad_seconds`` either side (the silence and noise a real recording carries around a clip made a model trained
on trimmed utterances hallucinate words; docs/transcription.md, "Short files"); a clip that is speech to its edges
is sent whole, exactly as utterances always went. Windows start on the model's frame grid, so spliced outputs and
timestamps line up exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Protocol

import numpy as np

from asr.errors import UsageError
from asr.inference.defaults import DEFAULT_MAX_SEGMENT_SECONDS

VAD_NAMES = ("silero", "webrtc", "energy", "none")


@dataclass(frozen=True)
class Window:
    """Samples ``[start, end)`` of the file at the model's rate, transcribed in one model pass."""

    start: int
    end: int
    joins_next: bool = False  # overlaps the next window; their outputs are spliced in the middle of the overlap


@dataclass
class SegmentationConfig:
    max_segment_seconds: float = DEFAULT_MAX_SEGMENT_SECONDS  # no window the model sees is longer than this
    threshold: float = 0.5  # frames with a speech probability at least this are speech
    min_silence_seconds: float = 0.3  # a pause at least this long ends a speech region
    speech_pad_seconds: float = 0.05  # audio kept on each side of a speech region (word onsets and tails)
    merge_gap_seconds: float = 0.0  # neighbouring regions closer than this share a window, if it stays short enough
    overlap_seconds: float = 2.0  # overlap of windows that split a stretch with no pause
    # A region too long for one window is cut in a pause at least this long (shorter quiet runs can be a stop
    # consonant or a soft syllable: cutting there splits a word, so such stretches are overlapped instead).
    min_cut_pause_seconds: float = 0.15
    # A file short enough for one window is cut down to its speech with this much audio kept before the first and
    # after the last speech frame (a margin for soft onsets and tails the detector's threshold misses) ...
    trim_pad_seconds: float = 0.1
    # ... at an edge with more non-speech than this; a shorter lead-in or tail is kept whole, as the utterances a
    # model is trained on have one (cutting an espeak clip's 75-ms lead-in to 50 ms raised a synth model's WER by
    # 6 points; docs/transcription.md, "Short files").
    trim_keep_seconds: float = 0.3

    def __post_init__(self) -> None:
        if self.max_segment_seconds < 1.0:
            raise UsageError(f"max segment length must be at least 1 s, got {self.max_segment_seconds}")
        if self.trim_pad_seconds < 0 or self.trim_keep_seconds < 0:
            raise UsageError(
                f"the trimming margin and kept edge must be 0 s or more, got {self.trim_pad_seconds} and "
                f"{self.trim_keep_seconds}"
            )
        # the splice point must leave each side at least a quarter window of context
        self.overlap_seconds = min(self.overlap_seconds, self.max_segment_seconds / 4)


class VoiceActivityDetector(Protocol):
    frame_seconds: float

    def speech_probabilities(self, blocks: Iterable[np.ndarray]) -> np.ndarray:
        """One probability per frame of ``frame_seconds`` for the audio in ``blocks`` (mono, in order)."""
        ...


def _frames(blocks: Iterable[np.ndarray], size: int, hop: int) -> Iterable[np.ndarray]:
    """(n, size) frames every ``hop`` samples across block boundaries, carrying the remainder over."""
    carry = np.zeros(0, dtype=np.float32)
    for block in blocks:
        x = np.concatenate([carry, block]) if carry.size else block
        n = (x.shape[0] - size) // hop + 1 if x.shape[0] >= size else 0
        if n > 0:
            yield np.lib.stride_tricks.sliding_window_view(x, size)[: n * hop : hop]
        carry = x[n * hop :]


class SileroVAD:
    """silero-vad's small network (its TorchScript model ships inside the pip package): 32-ms frames at 16 kHz."""

    def __init__(self, sample_rate: int):
        if sample_rate not in (8000, 16000):
            raise UsageError(f"silero-vad runs at 8 or 16 kHz, not at the model's {sample_rate} Hz; use --vad energy")
        import torch

        threads = torch.get_num_threads()
        try:
            from silero_vad import load_silero_vad
        except ImportError:
            raise UsageError("--vad silero needs the silero-vad package: pip install 'asr-rnn-ctc[vad]'") from None
        finally:
            torch.set_num_threads(threads)  # importing silero_vad sets torch to one thread for the whole process
        self.model = load_silero_vad()
        self.sample_rate = sample_rate
        self.size = 512 if sample_rate == 16000 else 256
        self.frame_seconds = self.size / sample_rate

    def speech_probabilities(self, blocks: Iterable[np.ndarray]) -> np.ndarray:
        import torch

        self.model.reset_states()
        out: list[float] = []
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # one tiny call per 32 ms: more threads would only spin
        try:
            with torch.inference_mode():
                for frames in _frames(blocks, self.size, self.size):
                    for frame in torch.from_numpy(np.array(frames, dtype=np.float32)):
                        out.append(float(self.model(frame, self.sample_rate)))
        finally:
            torch.set_num_threads(threads)
        return np.asarray(out, dtype=np.float32)


class WebRtcVAD:
    """The WebRTC project's GMM detector (``webrtcvad-wheels``): 30-ms frames, a yes/no per frame."""

    def __init__(self, sample_rate: int, aggressiveness: int = 2):
        if sample_rate not in (8000, 16000, 32000, 48000):
            raise UsageError(f"webrtcvad runs at 8, 16, 32 or 48 kHz, not at {sample_rate} Hz; use --vad energy")
        try:
            import webrtcvad
        except ImportError:
            raise UsageError(
                "--vad webrtc needs the webrtcvad-wheels package: pip install 'asr-rnn-ctc[vad]'"
            ) from None
        self.vad = webrtcvad.Vad(aggressiveness)
        self.sample_rate = sample_rate
        self.size = sample_rate * 30 // 1000
        self.frame_seconds = 0.03

    def speech_probabilities(self, blocks: Iterable[np.ndarray]) -> np.ndarray:
        out: list[float] = []
        for frames in _frames(blocks, self.size, self.size):
            pcm = (np.clip(frames, -1, 1) * 32767).astype(np.int16)
            out.extend(float(self.vad.is_speech(f.tobytes(), self.sample_rate)) for f in pcm)
        return np.asarray(out, dtype=np.float32)


class EnergyVAD:
    """Frame energy from the model's own mel filterbank, against the file's own noise floor (no dependency).

    A frame is speech when its log-mel energy stands ``margin_db`` (or a third of the file's dynamic range, if
    more) above the 10th percentile of the file's frames. A file whose loud and quiet frames differ by less than
    ``min_range_db`` (digital silence, steady noise) has no speech at all. Energy below ``low_hz`` is left out:
    speech has little there, and rumble (brown noise, traffic, air conditioning) lives there and swings by 15-20 dB
    from one 25-ms frame to the next, which made 5 s of brown noise "speech" (and the model spelt it out); above
    250 Hz the same noise varies by 5-6 dB, white and pink noise by 2-4 dB.
    """

    def __init__(
        self,
        mel_fb: np.ndarray,
        n_fft: int,
        win_length: int,
        hop_length: int,
        sample_rate: int,
        margin_db: float = 9.0,
        min_range_db: float = 10.0,
        low_hz: float = 250.0,
    ):
        freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
        self.mel_fb = np.asarray(mel_fb, dtype=np.float32) * (freqs >= low_hz)[:, None]  # (n_fft // 2 + 1, n_mels)
        self.n_fft, self.win, self.hop = n_fft, win_length, hop_length
        self.window = np.hanning(win_length + 1)[:-1].astype(np.float32)  # periodic Hann, as torch's
        self.frame_seconds = hop_length / sample_rate
        self.margin_db, self.min_range_db = margin_db, min_range_db

    def energies_db(self, blocks: Iterable[np.ndarray]) -> np.ndarray:
        out = []
        for frames in _frames(blocks, self.win, self.hop):
            spec = np.fft.rfft(frames * self.window, n=self.n_fft)
            mel = (spec.real**2 + spec.imag**2) @ self.mel_fb
            out.append(10 * np.log10(mel.sum(axis=1) + 1e-10))
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, dtype=np.float32)

    def speech_probabilities(self, blocks: Iterable[np.ndarray]) -> np.ndarray:
        e = self.energies_db(blocks)
        if e.size == 0:
            return e
        floor, top = np.percentile(e, 10), np.percentile(e, 99)
        if top - floor < self.min_range_db:
            return np.zeros_like(e)
        threshold = floor + max(self.margin_db, (top - floor) / 3)
        return (1.0 / (1.0 + np.exp(-(e - threshold) / 2.0))).astype(np.float32)  # 0.5 at the threshold


def make_vad(name: str, model) -> VoiceActivityDetector | None:
    """The detector called ``name`` for audio at ``model``'s rate (``none``: no detector, cut by length only)."""
    sr = model.sample_rate
    if name == "silero":
        return SileroVAD(sr)
    if name == "webrtc":
        return WebRtcVAD(sr)
    if name == "energy":
        f = model.features
        return EnergyVAD(f.mel_fb.detach().cpu().numpy(), f.config.n_fft, f.config.win_length, f.config.hop_length, sr)
    if name == "none":
        return None
    raise UsageError(f"unknown voice-activity detector {name!r}; choose one of {', '.join(VAD_NAMES)}")


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index pairs of the runs of True in ``flags``."""
    padded = np.concatenate([[False], flags.astype(bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def speech_regions(probs: np.ndarray, frame_seconds: float, config: SegmentationConfig) -> list[tuple[float, float]]:
    """(start, end) seconds of speech, pauses shorter than ``min_silence_seconds`` bridged, not yet padded."""
    min_gap = config.min_silence_seconds / frame_seconds
    regions: list[list[int]] = []
    for s, e in _runs(probs >= config.threshold):
        if regions and s - regions[-1][1] < min_gap:
            regions[-1][1] = e
        else:
            regions.append([s, e])
    return [(s * frame_seconds, e * frame_seconds) for s, e in regions]


def plan_windows(
    probs: np.ndarray | None,
    frame_seconds: float,
    num_samples: int,
    sample_rate: int,
    config: SegmentationConfig,
    grid: int = 1,
) -> list[Window]:
    """Windows covering the speech in a file of ``num_samples``, each at most ``max_segment_seconds`` long.

    ``probs`` are the detector's per-frame speech probabilities (``None``: the whole file is speech). Window
    starts are multiples of ``grid`` samples (the model's output frame), so overlapping windows share frames.
    A file no longer than one window is one window from its first speech frame to its last (pauses inside kept),
    widened by ``trim_pad_seconds``; without speech it has no window. An utterance that is speech to its edges is
    thus one window from its first sample to its last, as it always was.
    """
    if num_samples <= 0:
        return []
    if num_samples <= config.max_segment_seconds * sample_rate:
        return _trimmed(probs, frame_seconds, num_samples, sample_rate, config, grid)
    if probs is None:
        spans = [(0, num_samples)]
    else:
        pad = config.speech_pad_seconds
        spans = [
            (max(0, int((s - pad) * sample_rate)), min(num_samples, int(np.ceil((e + pad) * sample_rate))))
            for s, e in speech_regions(probs, frame_seconds, config)
        ]
        spans = [(a // grid * grid, b) for a, b in spans if b > a]
        spans = _merge(
            spans, int(config.merge_gap_seconds * sample_rate), int(config.max_segment_seconds * sample_rate)
        )
    max_len = max(grid, int(config.max_segment_seconds * sample_rate) // grid * grid)
    overlap = max(grid, int(config.overlap_seconds * sample_rate) // grid * grid)
    speech = None if probs is None else probs >= config.threshold
    windows: list[Window] = []
    for a, b in spans:
        windows.extend(
            _split(
                a,
                b,
                max_len,
                overlap,
                grid,
                speech,
                frame_seconds * sample_rate,
                max(1, int(round(config.min_cut_pause_seconds / frame_seconds))),
            )
        )
    return windows


def _trimmed(
    probs: np.ndarray | None,
    frame_seconds: float,
    num_samples: int,
    sample_rate: int,
    config: SegmentationConfig,
    grid: int,
) -> list[Window]:
    """The one window of a short file: its speech, ``trim_pad_seconds`` either side where the edge holds more than
    ``trim_keep_seconds`` of non-speech (else the edge is kept whole); none without speech."""
    if probs is None:
        return [Window(0, num_samples)]
    regions = speech_regions(probs, frame_seconds, config)
    if not regions:
        return []
    pad, keep = config.trim_pad_seconds, config.trim_keep_seconds
    first, last = regions[0][0], regions[-1][1]
    start = 0 if first <= keep else max(0, int((first - pad) * sample_rate)) // grid * grid
    end = num_samples
    if num_samples / sample_rate - last > keep:
        end = min(num_samples, int(np.ceil((last + pad) * sample_rate)))
    return [Window(start, end)] if end > start else []


def _merge(spans: list[tuple[int, int]], gap: int, max_len: int) -> list[tuple[int, int]]:
    """Join neighbours that overlap (after padding), or are closer than ``gap`` if the join stays within max."""
    out: list[tuple[int, int]] = []
    for a, b in spans:
        if out and (a <= out[-1][1] or (a - out[-1][1] < gap and b - out[-1][0] <= max_len)):
            if a <= out[-1][1] and b - out[-1][0] > max_len and out[-1][1] - out[-1][0] <= max_len:
                # padding made them touch but together they are too long: keep them apart, meeting halfway
                mid = (a + out[-1][1]) // 2
                out[-1] = (out[-1][0], mid)
                out.append((mid, b))
                continue
            out[-1] = (out[-1][0], max(b, out[-1][1]))
        else:
            out.append((a, b))
    return out


def _split(
    a: int,
    b: int,
    max_len: int,
    overlap: int,
    grid: int,
    speech: np.ndarray | None,
    frame_samples: float,
    min_pause_frames: int,
) -> list[Window]:
    """Cut [a, b) into windows of at most ``max_len``: at the longest pause (of ``min_pause_frames`` or more) in
    the second half of each window if there is one, else into windows overlapping by ``overlap`` that are
    spliced back together."""
    out = []
    while b - a > max_len:
        cut = None
        if speech is not None:
            cut = _pause_in(speech, a + max_len // 2, a + max_len, frame_samples, min_pause_frames)
        if cut is not None and cut // grid * grid > a:
            cut = cut // grid * grid
            out.append(Window(a, cut))
            a = cut
        else:
            out.append(Window(a, a + max_len, joins_next=True))
            a = a + max_len - overlap
    out.append(Window(a, b))
    return out


def _pause_in(speech: np.ndarray, lo: int, hi: int, frame_samples: float, min_frames: int) -> int | None:
    """The middle (in samples) of the longest non-speech run of at least ``min_frames`` frames between samples
    ``lo`` and ``hi``."""
    f_lo, f_hi = int(np.ceil(lo / frame_samples)), int(hi / frame_samples)
    if f_hi <= f_lo:
        return None
    runs = [r for r in _runs(~speech[f_lo:f_hi]) if r[1] - r[0] >= min_frames]
    if not runs:
        return None
    s, e = max(runs, key=lambda r: (r[1] - r[0], r[0]))
    return int((f_lo + (s + e) / 2) * frame_samples)
