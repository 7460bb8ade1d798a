"""Reading audio files: any format libsndfile knows (wav, flac, ogg, ...), any rate, any channel count.

Audio is decoded on the CPU (in DataLoader workers while training), down-mixed to mono and resampled to the
model's rate; everything after that happens on the model's device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import soundfile as sf


class AudioError(ValueError):
    """An audio file that cannot be used; the message names the file and the reason."""


@dataclass
class AudioInfo:
    path: str
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Read only the header: cheap enough to validate a whole corpus."""
    path = str(path)
    if not os.path.exists(path):
        raise AudioError(f"{path}: file not found")
    if os.path.getsize(path) == 0:
        raise AudioError(f"{path}: file is empty")
    try:
        info = sf.info(path)
    except Exception as e:  # libsndfile raises a generic RuntimeError/LibsndfileError
        raise AudioError(f"{path}: not a readable audio file ({_short(e)})") from None
    return AudioInfo(path, int(info.samplerate), int(info.channels), int(info.frames))


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling (soxr, high quality) of a 1-D float32 signal."""
    if orig_sr == target_sr:
        return audio
    import soxr  # a dependency of librosa; imported lazily to keep `import asr` light

    return soxr.resample(audio, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def load_audio(path: str | os.PathLike, sample_rate: int = 16000, min_samples: int = 1) -> np.ndarray:
    """Decode ``path`` to mono float32 in [-1, 1] at ``sample_rate``.

    Raises :class:`AudioError` (naming the file) for a missing, empty, corrupt or silent-length file, so callers
    can skip-and-count instead of crashing a long job.
    """
    path = str(path)
    if not os.path.exists(path):
        raise AudioError(f"{path}: file not found")
    if os.path.getsize(path) == 0:
        raise AudioError(f"{path}: file is empty")
    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as e:
        raise AudioError(f"{path}: not a readable audio file ({_short(e)})") from None
    if data.shape[0] < min_samples:
        raise AudioError(f"{path}: no audio samples")
    if sr <= 0:
        raise AudioError(f"{path}: invalid sample rate {sr}")
    audio = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(audio).all():
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    return np.ascontiguousarray(resample(audio, sr, sample_rate), dtype=np.float32)


def _short(e: Exception) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return msg[:200]
