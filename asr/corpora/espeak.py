"""Text to speech with eSpeak NG, called in-process through ctypes.

eSpeak NG is a formant synthesiser: robotic, but it runs about a thousand times faster than real time, needs no
model download, and offers many English accents and voice variants, which is what an offline, reproducible
training corpus needs. The shared library and its data come from the pip package ``espeakng-loader`` (the
optional extra ``asr-rnn-ctc[synth]``), so nothing has to be installed system-wide.

eSpeak keeps its state in C globals (current voice, parameters, output callback), so there is one engine per
process, created on first use and guarded by a lock. Worker processes each create their own.
"""

from __future__ import annotations

import ctypes
import re
import threading
from bisect import bisect_left
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from asr.data.audio import resample
from asr.data.tokenizer import normalize_text
from asr.errors import EspeakError, UsageError  # noqa: F401  (EspeakError re-exported)

ENGLISH_ACCENTS = (
    "en",
    "en-us",
    "en-us-nyc",
    "en-029",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-gb-x-rp",
)
ENGLISH_VARIANTS = (
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "m8",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "klatt",
    "klatt2",
    "klatt3",
    "klatt4",
    "klatt5",
    "klatt6",
    "croak",
    "whisper",
)

# Constants from espeak-ng's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001  # a phoneme event at each phoneme's start (word times need them)
_INITIALIZE_DONT_EXIT = 0x8000  # without it a bad data path makes the library call exit() on our process
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3
_PARAM_RANGE = 4
_EE_OK = 0
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7


class _Event(ctypes.Structure):
    """speak_lib.h's espeak_EVENT."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


# int (t_espeak_callback)(short *wav, int numsamples, espeak_EVENT *events)
_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class Phoneme:
    """One phoneme event: where it starts in eSpeak's own output (``sample``, at the engine's rate) and the
    1-based character position of the word (group) of the input text it belongs to."""

    sample: int
    text_position: int
    name: str

    @property
    def sounding(self) -> bool:
        # "_", "_:", "_!" are pauses; ";" a short break before a word.
        return not self.name.startswith("_") and self.name != ";"


class _Engine:
    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError:
            raise ImportError(
                "speech synthesis needs the optional package espeakng-loader: pip install 'asr-rnn-ctc[synth]'"
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
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint),
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.argtypes = []
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p

        data_path = espeakng_loader.get_data_path()
        sample_rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data_path).encode(), _INITIALIZE_DONT_EXIT | _INITIALIZE_PHONEME_EVENTS
        )
        if sample_rate <= 0:
            raise EspeakError(f"espeak_Initialize failed (data path {data_path})")
        self.lib = lib
        self.sample_rate = sample_rate
        self.lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        self._phonemes: list[Phoneme] = []
        # Kept on self: if the ctypes callback object were garbage-collected, C would call freed memory.
        self._callback = _SynthCallback(self._on_audio)
        lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav, n: int, events) -> int:
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events and events[i].type != _EVENT_LIST_TERMINATED:
            e = events[i]
            if e.type == _EVENT_PHONEME:
                self._phonemes.append(Phoneme(e.sample, e.text_position, e.id.decode("ascii", "replace")))
            i += 1
        return 0

    def phoneme_count(self, word: str) -> int:
        """Phonemes in ``word`` spoken alone with the current voice (eSpeak's own transcription of it)."""
        buf = ctypes.create_string_buffer(word.encode("utf-8"))
        ptr = ctypes.c_char_p(ctypes.addressof(buf))
        units = []
        while ptr.value:
            out = self.lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, ord("|") << 8)
            units += [u for u in (out or b"").decode("ascii", "replace").replace(" ", "|").split("|") if u]
        return len(units)

    def synthesize(
        self, text: str, voice: str, rate: int, pitch: int, pitch_range: int, count_words: Sequence[str] = ()
    ) -> tuple[np.ndarray, list[Phoneme], dict[str, int]]:
        """Audio at the engine's rate, its phoneme events, and the phoneme count of each of ``count_words``."""
        with self.lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise UsageError(
                    f"unknown espeak voice {voice!r} (e.g. 'en-us+m3'; accents: {', '.join(ENGLISH_ACCENTS)})"
                )
            # Set after the voice: selecting a voice may reset them.
            self.lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
            self.lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
            self.lib.espeak_SetParameter(_PARAM_RANGE, int(pitch_range), 0)
            self._chunks, self._phonemes = [], []
            data = text.encode("utf-8")
            err = self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8, None, None)
            if err != _EE_OK:
                raise EspeakError(f"espeak_Synth failed with error {err} for {text!r}")
            self.lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
            phonemes, self._phonemes = self._phonemes, []
            counts = {w: self.phoneme_count(w) for w in set(count_words)}
        if not chunks:
            return np.zeros(0, dtype=np.float32), phonemes, counts
        return np.concatenate(chunks).astype(np.float32) / 32768.0, phonemes, counts


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
    return _trim(audio, sample_rate, margin, threshold_db)[0]


def _trim(
    audio: np.ndarray, sample_rate: int, margin: float = 0.075, threshold_db: float = -40.0
) -> tuple[np.ndarray, int]:
    """:func:`trim_silence`, and by how many samples the audio moved later (negative: earlier)."""
    hop = max(1, sample_rate // 100)
    n_frames = len(audio) // hop
    pad = int(round(margin * sample_rate))
    if n_frames == 0:
        return audio, 0
    rms = np.sqrt(np.mean(audio[: n_frames * hop].reshape(n_frames, hop) ** 2, axis=1) + 1e-12)
    voiced = np.flatnonzero(rms > rms.max() * 10 ** (threshold_db / 20))
    start, end = voiced[0] * hop, min(len(audio), (voiced[-1] + 1) * hop)
    out = audio[max(0, start - pad) : end + pad]
    lead, tail = max(0, pad - start), max(0, end + pad - len(audio))
    if lead or tail:
        out = np.pad(out, (lead, tail))
    return np.ascontiguousarray(out, dtype=np.float32), lead - max(0, start - pad)


# Words as eSpeak reads them: runs between spaces and the characters that normalisation turns into spaces.
_WORD = re.compile(r"[^\s\-_/\u2013\u2014]+")


def _text_words(text: str) -> list[tuple[int, str, str]]:
    """(1-based position of the last character, raw word, normalised word) of each word of ``text`` that
    normalises to something."""
    return [(m.end(), m.group(), normalize_text(m.group())) for m in _WORD.finditer(text) if normalize_text(m.group())]


def word_times(
    text: str, phonemes: Sequence[Phoneme], counts: dict[str, int], engine_rate: int, n_samples: int
) -> list[dict]:
    """``[{"word", "start", "end"}]`` in seconds of eSpeak's raw output, one entry per normalised word of ``text``.

    A word starts with its first sounding phoneme and ends where the next phoneme event starts (the next word's
    first sound, or a pause), so a pause after a word is not part of it. eSpeak sometimes speaks a function word
    together with the word before it ("in the", "on the"): the group's phonemes all carry the first word's
    position, so they are shared out using each word's phoneme count spoken alone (``counts``, keyed by the raw
    word). A word that still cannot be placed gets ``start`` and ``end`` None rather than a guess.
    """
    words = _text_words(text)
    if not words:
        return []
    ends = [end for end, _, _ in words]
    raw = [r for _, r, _ in words]
    groups: list[list[int]] = [[] for _ in words]  # indices into phonemes, per word
    for i, ph in enumerate(phonemes):
        # The word that ends at or after the event's position: after punctuation eSpeak points at the space
        # before the word rather than at its first letter.
        k = bisect_left(ends, ph.text_position)
        if k < len(words):
            groups[k].append(i)
    owner = [-1] * len(phonemes)  # word index of each sounding phoneme
    k = 0
    while k < len(words):
        j = k + 1
        while j < len(words) and not any(phonemes[i].sounding for i in groups[j]):
            j += 1  # words k+1..j-1 were spoken inside word k's group
        sounding = [i for i in groups[k] if phonemes[i].sounding]
        cut = 0
        for m in range(k, j):
            n = counts.get(raw[m], 0) if m < j - 1 else len(sounding) - cut
            if n <= 0 or cut + n > len(sounding):
                break
            for i in sounding[cut : cut + n]:
                owner[i] = m
            cut += n
        k = j
    out = []
    for m, (_, _, word) in enumerate(words):
        mine = [i for i, o in enumerate(owner) if o == m]
        if not mine:
            out.append({"word": word, "start": None, "end": None})
            continue
        nxt = mine[-1] + 1
        end = phonemes[nxt].sample if nxt < len(phonemes) else n_samples
        out.append({"word": word, "start": phonemes[mine[0]].sample / engine_rate, "end": end / engine_rate})
    return out


def synthesize(
    text: str,
    voice: str = "en-us+m3",
    rate: int = 170,
    pitch: int = 50,
    pitch_range: int = 50,
    sample_rate: int = 16000,
    trim: bool = True,
    words: bool = False,
) -> np.ndarray | tuple[np.ndarray, list[dict]]:
    """Speak ``text`` and return mono float32 audio in [-1, 1] at ``sample_rate``.

    ``voice`` is an eSpeak voice name, optionally with a variant ("en-gb-x-rp+f2"); ``rate`` is in words per
    minute (80-450), ``pitch`` and ``pitch_range`` are 0-99 with 50 the voice's normal. Raises ValueError for
    an unknown voice.

    With ``words=True`` returns ``(audio, words)``: one ``{"word", "start", "end"}`` per word of the normalised
    text, in seconds of the returned audio (after resampling and silence trimming), from eSpeak's own phoneme
    events (see :func:`word_times` for how starts and ends are defined).
    """
    engine = _get_engine()
    count_words = [m.group() for m in _WORD.finditer(text)] if words else ()
    audio, phonemes, counts = engine.synthesize(text, voice, rate, pitch, pitch_range, count_words)
    times = word_times(text, phonemes, counts, engine.sample_rate, len(audio)) if words else []
    shift = 0
    if len(audio):
        audio = resample(audio, engine.sample_rate, sample_rate)
        if trim:
            audio, shift = _trim(audio, sample_rate)
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    if not words:
        return audio
    duration = len(audio) / sample_rate
    for w in times:
        if w["start"] is not None:
            w["start"] = round(float(min(max(w["start"] + shift / sample_rate, 0.0), duration)), 4)
            w["end"] = round(float(min(max(w["end"] + shift / sample_rate, w["start"]), duration)), 4)
    return audio, times
