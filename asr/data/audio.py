"""Reading audio files: any format libsndfile knows (wav, flac, ogg, ...), any rate, any channel count.

Audio is decoded on the CPU (in DataLoader workers while training), down-mixed to mono and resampled to the
model's rate; everything after that happens on the model's device.
"""

from __future__ import annotations

from asr.errors import AudioError  # noqa: F401  (re-exported: raised here, caught as asr.ASRError)

import io
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import soundfile as sf


# What `asr transcribe DIR` picks up in a directory: the containers libsndfile decodes.
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au",
                              ".snd", ".caf", ".w64", ".rf64", ".wv"})


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


def find_audio_files(directory: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Audio files under ``directory`` (recursively, by extension, sorted) and the other files found there."""
    audio, other = [], []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            (audio if os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS else other).append(path)
    return audio, other


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
    return _mono_at_rate(data, sr, path, sample_rate, min_samples)


def decode_audio(data: bytes, name: str, sample_rate: int = 16000, min_samples: int = 1) -> np.ndarray:
    """:func:`load_audio` for bytes already in memory (a member of a tar shard); ``name`` goes in every error.

    Shards keep the audio bytes as they were (FLAC stays FLAC), so decoding happens here, in the DataLoader
    worker that read the shard, exactly as for a loose file.
    """
    if not data:
        raise AudioError(f"{name}: file is empty")
    try:
        audio, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as e:
        raise AudioError(f"{name}: not a readable audio file ({_short(e)})") from None
    return _mono_at_rate(audio, sr, name, sample_rate, min_samples)


def _mono_at_rate(data: np.ndarray, sr: int, path: str, sample_rate: int, min_samples: int) -> np.ndarray:
    if data.shape[0] < min_samples:
        raise AudioError(f"{path}: no audio samples")
    if sr <= 0:
        raise AudioError(f"{path}: invalid sample rate {sr}")
    audio = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(audio).all():
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    return np.ascontiguousarray(resample(audio, sr, sample_rate), dtype=np.float32)


def read_blocks(path: str | os.PathLike, sample_rate: int = 16000, block_seconds: float = 30.0,
                warnings: list[str] | None = None) -> Iterator[np.ndarray]:
    """Decode ``path`` piece by piece: mono float32 blocks at ``sample_rate``, never the whole file at once.

    Long recordings are read this way so that memory depends on ``block_seconds``, not on the file's length.
    Reading goes on until the decoder stops, whatever the header says: libsndfile already trims a WAV whose
    data chunk is shorter than declared; a compressed stream that breaks off (a truncated FLAC) ends the file
    where it broke, with a line in ``warnings`` saying where, rather than losing what came before.
    """
    info = audio_info(path)
    path = str(path)
    if info.sample_rate <= 0:
        raise AudioError(f"{path}: invalid sample rate {info.sample_rate}")
    block = max(1, int(block_seconds * info.sample_rate))
    unit = min(block, info.sample_rate)  # decoder reads of 1 s: a stream that breaks off loses at most that
    stream = None
    if info.sample_rate != sample_rate:
        import soxr

        stream = soxr.ResampleStream(info.sample_rate, sample_rate, 1, dtype="float32", quality="HQ")
    read = 0
    try:
        f = sf.SoundFile(path)
    except Exception as e:
        raise AudioError(f"{path}: not a readable audio file ({_short(e)})") from None
    with f:
        last = False
        while not last:
            pieces: list[np.ndarray] = []
            got = 0
            while got < block and not last:
                try:
                    data = f.read(unit, dtype="float32", always_2d=True)
                except Exception as e:
                    if read + got == 0:
                        raise AudioError(f"{path}: not a readable audio file ({_short(e)})") from None
                    if warnings is not None:
                        warnings.append(f"{path}: audio breaks off at {(read + got) / info.sample_rate:.2f} s of "
                                        f"{info.duration:.2f} s declared ({_short(e)}); transcribing what was read")
                    data = np.zeros((0, info.channels), dtype=np.float32)
                last = data.shape[0] < unit
                got += data.shape[0]
                pieces.append(data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0])
            audio = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
            if not np.isfinite(audio).all():
                raise AudioError(f"{path}: audio contains NaN or infinite samples "
                                 f"(near {read / info.sample_rate:.0f} s)")
            read += got
            if stream is not None:
                audio = stream.resample_chunk(np.ascontiguousarray(audio), last=last)
            if audio.size:
                yield np.ascontiguousarray(audio, dtype=np.float32)
    if read == 0:
        if info.frames == 0 and os.path.getsize(path) > 1024:
            raise AudioError(f"{path}: the header declares no audio samples but the file holds "
                             f"{os.path.getsize(path)} bytes (a header written before the recording ended?)")
        raise AudioError(f"{path}: no audio samples")


def _short(e: Exception) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return msg[:200]
