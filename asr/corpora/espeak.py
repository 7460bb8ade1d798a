"""Text to speech with eSpeak NG, called in-process through ctypes.

eSpeak NG is a formant synthesiser: robotic, but it runs about a thousand times faster than real time, needs no
model download, and offers many English accents and voice variants, which is what an offline, reproducible
training corpus needs. The shared library and its data come from the pip package ``espeakng-loader`` (the
optional extra ``asr[synth]``), so nothing has to be installed system-wide.

eSpeak keeps its state in C globals (current voice, parameters, output callback), so there is one engine per
process, created on first use and guarded by a lock. Worker processes each create their own.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np

from asr.audio import resample

ENGLISH_ACCENTS = (
    "en", "en-us", "en-us-nyc", "en-029", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-gb-x-rp",
)
ENGLISH_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "croak", "whisper",
)

# Constants from espeak-ng's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # without it a bad data path makes the library call exit() on our process
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3
_PARAM_RANGE = 4
_EE_OK = 0

# int (t_espeak_callback)(short *wav, int numsamples, espeak_EVENT *events); the events are not needed.
_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class EspeakError(RuntimeError):
    """The eSpeak NG library could not be loaded, initialised, or failed to synthesise."""


class _Engine:
    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError:
            raise ImportError(
                "speech synthesis needs the optional package espeakng-loader: pip install 'asr[synth]'"
            ) from None
        try:
            lib = ctypes.CDLL(espeakng_loader.get_library_path())
        except OSError as e:
            raise EspeakError(f"cannot load libespeak-ng: {e}") from None
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.argtypes = []
        lib.espeak_Synchronize.restype = ctypes.c_int

        data_path = espeakng_loader.get_data_path()
        sample_rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data_path).encode(), _INITIALIZE_DONT_EXIT
        )
        if sample_rate <= 0:
            raise EspeakError(f"espeak_Initialize failed (data path {data_path})")
        self.lib = lib
        self.sample_rate = sample_rate
        self.lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        # Kept on self: if the ctypes callback object were garbage-collected, C would call freed memory.
        self._callback = _SynthCallback(self._on_audio)
        lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav, n: int, events) -> int:
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def synthesize(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int) -> np.ndarray:
        with self.lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise ValueError(f"unknown espeak voice {voice!r} (e.g. 'en-us+m3'; "
                                 f"accents: {', '.join(ENGLISH_ACCENTS)})")
            # Set after the voice: selecting a voice may reset them.
            self.lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
            self.lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
            self.lib.espeak_SetParameter(_PARAM_RANGE, int(pitch_range), 0)
            self._chunks = []
            data = text.encode("utf-8")
            err = self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8, None, None)
            if err != _EE_OK:
                raise EspeakError(f"espeak_Synth failed with error {err} for {text!r}")
            self.lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32) / 32768.0


_engine: _Engine | None = None
_engine_lock = threading.Lock()


def _get_engine() -> _Engine:
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = _Engine()
        return _engine


def is_available() -> bool:
    """True when espeakng-loader is installed (the library itself is only loaded on first synthesis)."""
    try:
        import espeakng_loader  # noqa: F401
    except ImportError:
        return False
    return True


def trim_silence(audio: np.ndarray, sample_rate: int, margin: float = 0.075, threshold_db: float = -40.0) -> np.ndarray:
    """Cut leading/trailing silence down to ``margin`` seconds (zero-padding up to it where there is less).

    A fixed margin gives every utterance the same short lead-in and tail: a CTC model should see a little
    silence around speech, but not seconds of it, and not speech that starts on the very first frame.
    """
    hop = max(1, sample_rate // 100)
    n_frames = len(audio) // hop
    pad = int(round(margin * sample_rate))
    if n_frames == 0:
        return audio
    rms = np.sqrt(np.mean(audio[: n_frames * hop].reshape(n_frames, hop) ** 2, axis=1) + 1e-12)
    voiced = np.flatnonzero(rms > rms.max() * 10 ** (threshold_db / 20))
    start, end = voiced[0] * hop, min(len(audio), (voiced[-1] + 1) * hop)
    out = audio[max(0, start - pad): end + pad]
    lead, tail = max(0, pad - start), max(0, end + pad - len(audio))
    if lead or tail:
        out = np.pad(out, (lead, tail))
    return np.ascontiguousarray(out, dtype=np.float32)


def synthesize(text: str, voice: str = "en-us+m3", rate: int = 170, pitch: int = 50, pitch_range: int = 50,
               sample_rate: int = 16000, trim: bool = True) -> np.ndarray:
    """Speak ``text`` and return mono float32 audio in [-1, 1] at ``sample_rate``.

    ``voice`` is an eSpeak voice name, optionally with a variant ("en-gb-x-rp+f2"); ``rate`` is in words per
    minute (80-450), ``pitch`` and ``pitch_range`` are 0-99 with 50 the voice's normal. Raises ValueError for
    an unknown voice.
    """
    engine = _get_engine()
    audio = engine.synthesize(text, voice, rate, pitch, pitch_range)
    if len(audio) == 0:
        return audio
    audio = resample(audio, engine.sample_rate, sample_rate)
    if trim:
        audio = trim_silence(audio, sample_rate)
    return np.ascontiguousarray(audio, dtype=np.float32)
