"""Reading audio files: any format libsndfile knows (wav, flac, ogg, ...), any rate, any channel count.

Audio is decoded on the CPU (in DataLoader workers while training), down-mixed to mono and resampled to the
model's rate; everything after that happens on the model's device.

Headers are not trusted for the length. A FLAC written to a pipe has ``total_samples = 0`` in its STREAMINFO
("unknown"), for which libsndfile reports 2**63 - 1 frames; such a file is counted by decoding it (in blocks),
so durations, limits and progress are the real ones, and every read goes to the decoder's end, never to the
header's number. A source is a path (``str``, ``os.PathLike``; any bytes, so a name that is not UTF-8 opens) or
a binary file object (a member of a tar shard, read from memory through the same functions); ``name`` is what
messages call it.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass
from typing import IO, Any, Iterator, Union

import numpy as np
import soundfile as sf

from asr.errors import AudioError  # noqa: F401  (re-exported: raised here, caught as asr.ASRError)

# What `asr transcribe DIR` picks up in a directory: the containers libsndfile decodes.
AUDIO_EXTENSIONS = frozenset(
    {
        ".wav",
        ".flac",
        ".ogg",
        ".oga",
        ".opus",
        ".mp3",
        ".aif",
        ".aiff",
        ".aifc",
        ".au",
        ".snd",
        ".caf",
        ".w64",
        ".rf64",
        ".wv",
    }
)

# libsndfile reports SF_COUNT_MAX (2**63 - 1) frames for a stream whose header leaves the length unknown; no real
# file comes near 2**62 frames (3 million years at 48 kHz), so anything from there up means "unknown".
UNKNOWN_FRAMES = 2**62

Source = Union[str, "os.PathLike[str]", IO[bytes]]


@dataclass
class AudioInfo:
    path: str
    sample_rate: int
    channels: int
    frames: int
    # False when the header gave no length and ``frames`` was counted by decoding (see the module docstring).
    declared: bool = True

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def display_path(path: str | os.PathLike) -> str:
    """``path`` as a line of text: bytes that are not UTF-8 as ``\\xNN`` (a name read from the disk keeps them as
    surrogates, which no UTF-8 terminal or JSON reader takes), everything else as it is."""
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")


def _name(source: Source, name: str | None) -> str:
    if name is not None:
        return name
    if isinstance(source, (str, os.PathLike)):
        return display_path(source)
    return str(getattr(source, "name", None) or "audio")


def _check_path(path: str | os.PathLike, name: str) -> None:
    """Missing, not a file (a pipe must be spooled first: :func:`regular_file`), or empty: one line each."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise AudioError(f"{name}: file not found") from None
    except OSError as e:
        raise AudioError(f"{name}: cannot read the file ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise AudioError(f"{name}: a folder, not an audio file")
    if not stat.S_ISREG(st.st_mode):
        raise AudioError(
            f"{name}: a pipe or device, not a file: audio is read more than once, so copy it to a "
            "file first (asr transcribe does this itself)"
        )
    if st.st_size == 0:
        raise AudioError(f"{name}: file is empty")


def _opened(source: Source, name: str) -> sf.SoundFile:
    if isinstance(source, (str, os.PathLike)):
        _check_path(source, name)
        target: Any = os.fsencode(source)  # bytes: soundfile would encode a str strictly, failing on non-UTF-8
    else:
        source.seek(0)
        target = source
    try:
        return sf.SoundFile(target)
    except Exception as e:  # libsndfile raises a generic RuntimeError/LibsndfileError
        raise AudioError(f"{name}: not a readable audio file ({_short(e)})") from None


def read_frames(f: sf.SoundFile, frames: int) -> tuple[np.ndarray, str | None]:
    """Up to ``frames`` frames (float32, ``(n, channels)``) and the decoder's error, if it stopped on one.

    Through libsndfile's ``sf_readf_float`` itself: soundfile's ``read`` seeks to its new position after each
    read, which fails at the end of a FLAC of unknown length and loses the block that was just decoded (the last
    partial second), and it raises on a stream that breaks off, losing what that read decoded before the break.
    """
    out = np.empty((frames, f.channels), dtype=np.float32)
    try:
        from soundfile import _ffi, _snd  # soundfile's own cffi binding of libsndfile

        handle = f._file
    except (ImportError, AttributeError):  # pragma: no cover - a soundfile laid out otherwise: its public read
        try:
            return f.read(frames, dtype="float32", always_2d=True), None
        except Exception as e:
            return np.zeros((0, f.channels), dtype=np.float32), _short(e)
    n = int(_snd.sf_readf_float(handle, _ffi.cast("float *", out.ctypes.data), frames))
    error = None
    if n < frames and _snd.sf_error(handle):
        error = _ffi.string(_snd.sf_strerror(handle)).decode("utf-8", errors="replace").strip()
    return out[: max(0, n)], error or None


def iter_frames(source: Source, frames: int, name: str | None = None) -> Iterator[np.ndarray]:
    """``(n, channels)`` float32 blocks of ``frames`` frames (the last shorter) at the file's own rate, to the
    decoder's end (a FLAC of unknown length too); a stream that breaks off raises :class:`AudioError` there."""
    name = _name(source, name)
    with _opened(source, name) as f:
        while True:
            data, error = read_frames(f, frames)
            if error is not None:
                raise AudioError(f"{name}: read failed mid-file ({error})")
            if data.shape[0]:
                yield data
            if data.shape[0] < frames:
                return


def _count_frames(source: Source, name: str, limit: int | None) -> int:
    """Frames that decode (to the end, or to a break-off), or ``limit + 1`` if there are more than ``limit``."""
    with _opened(source, name) as f:
        unit = _unit(f)
        total = 0
        while limit is None or total <= limit:
            want = unit if limit is None else min(unit, limit + 1 - total)
            data, error = read_frames(f, want)
            total += data.shape[0]
            if data.shape[0] < want:
                break
    return total


def _unit(f: sf.SoundFile) -> int:
    """Frames per read when counting or loading whole: about 4 MB of float32, whatever the channel count."""
    return max(4096, (1 << 20) // max(1, int(f.channels)))


def audio_info(source: Source, name: str | None = None, max_seconds: float | None = None) -> AudioInfo:
    """The header (cheap enough to validate a whole corpus); a length the header leaves unknown is counted by
    decoding, in blocks. With ``max_seconds`` the count stops one frame past it: enough to refuse a file over a
    limit without decoding all of a small upload that holds hours of silence (``frames`` is then a lower bound)."""
    name = _name(source, name)
    with _opened(source, name) as f:
        rate, channels, frames = int(f.samplerate), int(f.channels), int(f.frames)
    declared = frames < UNKNOWN_FRAMES
    if not declared:
        limit = None if max_seconds is None or rate <= 0 else int(max_seconds * rate)
        frames = _count_frames(source, name, limit)
    if not isinstance(source, (str, os.PathLike)):
        source.seek(0)
    path = os.fsdecode(source) if isinstance(source, (str, os.PathLike)) else name
    return AudioInfo(path, rate, channels, frames, declared)


def find_audio_files(directory: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Audio files under ``directory`` (recursively, by extension, sorted) and the other files found there."""
    audio, other = [], []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            (audio if os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS else other).append(path)
    return audio, other


def is_pipe(path: str | os.PathLike) -> bool:
    """True for a FIFO, ``<(cat a.wav)`` (``/dev/fd/63``) or a character device: bytes that can be read once."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


@contextlib.contextmanager
def regular_file(path: str | os.PathLike) -> Iterator[str | os.PathLike]:
    """``path`` itself, or for a pipe (:func:`is_pipe`) a temporary copy of everything it delivers, removed after.

    Transcription reads a file twice (voice activity, then the windows), and a pipe gives its bytes once; the
    copy goes to the temporary folder (disk, not memory, so a long recording streamed in costs no RAM).
    """
    if not is_pipe(path):
        yield path
        return
    with tempfile.NamedTemporaryFile(prefix="asr-pipe-", suffix=os.path.splitext(os.fsdecode(path))[1]) as tmp:
        try:
            with open(path, "rb") as src:
                shutil.copyfileobj(src, tmp, 1 << 20)
        except OSError as e:
            raise AudioError(f"{display_path(path)}: cannot read the pipe ({e.strerror})") from None
        tmp.flush()
        yield tmp.name


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling (soxr, high quality) of a 1-D float32 signal."""
    if orig_sr == target_sr:
        return audio
    import soxr  # a dependency of librosa; imported lazily to keep `import asr` light

    return soxr.resample(audio, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def load_audio(source: Source, sample_rate: int = 16000, min_samples: int = 1, name: str | None = None) -> np.ndarray:
    """Decode ``source`` to mono float32 in [-1, 1] at ``sample_rate``.

    Raises :class:`AudioError` (naming the file) for a missing, empty, corrupt, cut-off or silent-length file, so
    callers can skip-and-count instead of crashing a long job (training must not learn a transcript against half
    its audio; :func:`read_blocks` is the reader that keeps what came before a break).
    """
    name = _name(source, name)
    with _opened(source, name) as f:
        sr = int(f.samplerate)
        if sr <= 0:
            raise AudioError(f"{name}: invalid sample rate {sr}")
        pieces, unit = [], _unit(f)
        while True:
            data, error = read_frames(f, unit)
            if error is not None:
                raise AudioError(f"{name}: not a readable audio file ({error})")
            pieces.append(data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0])
            if data.shape[0] < unit:
                break
    audio = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
    if audio.shape[0] < min_samples:
        raise AudioError(f"{name}: no audio samples")
    if not np.isfinite(audio).all():
        raise AudioError(f"{name}: audio contains NaN or infinite samples")
    return np.ascontiguousarray(resample(audio, sr, sample_rate), dtype=np.float32)


def decode_audio(data: bytes, name: str, sample_rate: int = 16000, min_samples: int = 1) -> np.ndarray:
    """:func:`load_audio` for bytes already in memory (a member of a tar shard); ``name`` goes in every error.

    Shards keep the audio bytes as they were (FLAC stays FLAC), so decoding happens here, in the DataLoader
    worker that read the shard, exactly as for a loose file.
    """
    if not data:
        raise AudioError(f"{name}: file is empty")
    return load_audio(io.BytesIO(data), sample_rate, min_samples, name=name)


def read_blocks(
    source: Source,
    sample_rate: int = 16000,
    block_seconds: float = 30.0,
    warnings: list[str] | None = None,
    name: str | None = None,
) -> Iterator[np.ndarray]:
    """Decode ``source`` piece by piece: mono float32 blocks at ``sample_rate``, never the whole file at once.

    Long recordings are read this way so that memory depends on ``block_seconds``, not on the file's length.
    Reading goes on until the decoder stops, whatever the header says: libsndfile already trims a WAV whose
    data chunk is shorter than declared; a FLAC of unknown length is read to its end; a compressed stream that
    breaks off (a truncated FLAC) ends the file where it broke, with a line in ``warnings`` saying where, rather
    than losing what came before.
    """
    name = _name(source, name)
    f = _opened(source, name)
    with f:
        rate, frames = int(f.samplerate), int(f.frames)
        if rate <= 0:
            raise AudioError(f"{name}: invalid sample rate {rate}")
        declared = frames < UNKNOWN_FRAMES
        block = max(1, int(block_seconds * rate))
        unit = min(block, rate)  # decoder reads of 1 s: a stream that breaks off loses at most that
        stream = None
        if rate != sample_rate:
            import soxr

            stream = soxr.ResampleStream(rate, sample_rate, 1, dtype="float32", quality="HQ")
        read = 0
        last = False
        while not last:
            pieces: list[np.ndarray] = []
            got = 0
            while got < block and not last:
                data, error = read_frames(f, unit)
                if error is not None:
                    if read + got + data.shape[0] == 0:
                        raise AudioError(f"{name}: not a readable audio file ({error})")
                    if warnings is not None:
                        at = (read + got + data.shape[0]) / rate
                        of = f"of {frames / rate:.2f} s declared" if declared else "(the header declares no length)"
                        warnings.append(
                            f"{name}: audio breaks off at {at:.2f} s {of} ({error}); transcribing what was read"
                        )
                last = data.shape[0] < unit
                got += data.shape[0]
                pieces.append(data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0])
            audio = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
            if not np.isfinite(audio).all():
                raise AudioError(f"{name}: audio contains NaN or infinite samples (near {read / rate:.0f} s)")
            read += got
            if stream is not None:
                audio = stream.resample_chunk(np.ascontiguousarray(audio), last=last)
            if audio.size:
                yield np.ascontiguousarray(audio, dtype=np.float32)
    if read == 0:
        size = _size(source)
        if frames == 0 and size > 1024:
            raise AudioError(
                f"{name}: the header declares no audio samples but the file holds "
                f"{size} bytes (a header written before the recording ended?)"
            )
        raise AudioError(f"{name}: no audio samples")


def _size(source: Source) -> int:
    if isinstance(source, (str, os.PathLike)):
        return os.path.getsize(source)
    if isinstance(source, io.BytesIO):
        return len(source.getbuffer())
    return 0


def _short(e: Exception) -> str:
    text = re.sub(r"^Error opening <[^>]*>: ", "", str(e).strip())  # a file object's repr is noise
    msg = text.splitlines()[0] if text else type(e).__name__
    return msg[:200]
