"""An offline synthetic speech corpus: voice-assistant style sentences spoken by eSpeak NG.

It exists so that the whole pipeline (data, training, evaluation) can be run and tested without downloading
anything. The corpus is meant to measure something real, so:

* the test split is spoken by voices never heard in training: whole voice variants are held out for dev and
  test, and further accent+variant combinations are held out among the rest;
* dev and test sentences never occur verbatim in train;
* speaking rate, pitch, pitch range, loudness and (optionally) coloured background noise vary per utterance.

Everything is drawn from seeded generators, so a corpus is a function of its parameters. The audio itself is
reproducible only up to eSpeak's internal state (it carries some between calls, giving a few milliseconds of
jitter), so texts, voices and the other drawn parameters are what is guaranteed identical.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from asr.corpora.espeak import ENGLISH_ACCENTS, ENGLISH_VARIANTS
from asr.corpora.numbers import ONES, TENS, number_to_words
from asr.data.manifest import Utterance, read_manifest, write_manifest
from asr.errors import EspeakError
from asr.help_format import DefaultsHelpFormatter

SPLITS = ("train", "dev", "test")
PARAMS_FILE = "corpus.json"
# Bump when the grammar, voice split or rendering changes, so that old corpora are not silently reused.
CORPUS_VERSION = 1

# Whole variants never heard in training; every accent speaks them in their split.
DEV_VARIANTS = ("m6", "f3")
TEST_VARIANTS = ("m7", "f4", "klatt5")

TINY_SIZES = {"n_train": 20, "n_dev": 5, "n_test": 5}

# ---------------------------------------------------------------------------------------------------------
# Sentence grammar


ROOMS = (
    "kitchen",
    "living room",
    "bedroom",
    "bathroom",
    "garage",
    "office",
    "hallway",
    "basement",
    "garden",
    "dining room",
    "kids room",
)
DEVICES = (
    "lights",
    "lamp",
    "fan",
    "heater",
    "television",
    "radio",
    "oven",
    "dishwasher",
    "washing machine",
    "air conditioner",
    "coffee maker",
    "speaker",
)
OPENABLES = ("door", "window", "blinds", "curtains", "gate", "shutters")
COLORS = ("red", "green", "blue", "yellow", "black", "white", "orange", "purple", "pink", "brown", "gray")
OBJECTS = (
    "box",
    "ball",
    "cup",
    "block",
    "book",
    "bottle",
    "chair",
    "pencil",
    "plate",
    "key",
    "phone",
    "hat",
    "bag",
    "shoe",
    "spoon",
    "brick",
)
PLACES = ("left", "right", "top", "bottom", "front", "back", "middle", "corner", "table", "shelf", "floor")
PREPOSITIONS = ("on", "under", "next to", "behind", "in front of", "above", "below", "inside", "near")
CONTACTS = (
    "mom",
    "dad",
    "grandma",
    "grandpa",
    "alice",
    "bob",
    "sarah",
    "david",
    "michael",
    "emma",
    "james",
    "olivia",
    "peter",
    "lucy",
    "the office",
    "the doctor",
    "my sister",
    "my brother",
    "jack",
    "anna",
)
CITIES = (
    "london",
    "paris",
    "berlin",
    "tokyo",
    "boston",
    "chicago",
    "denver",
    "seattle",
    "madrid",
    "rome",
    "dublin",
    "sydney",
    "toronto",
    "austin",
    "miami",
    "oslo",
    "vienna",
    "lisbon",
)
DAYS = (
    "today",
    "tomorrow",
    "tonight",
    "on monday",
    "on tuesday",
    "on wednesday",
    "on thursday",
    "on friday",
    "on saturday",
    "on sunday",
    "this weekend",
    "next week",
)
GENRES = ("jazz", "rock", "classical", "pop", "country", "blues", "folk", "piano", "relaxing", "dance")
GROCERIES = ("milk", "bread", "coffee", "tea", "butter", "cheese", "rice", "pasta", "sugar", "yogurt", "flour")
COUNTABLE_GROCERIES = ("eggs", "apples", "bananas", "tomatoes", "onions", "potatoes", "oranges", "carrots", "lemons")
STREETS = ("main", "oak", "pine", "maple", "elm", "park", "lake", "hill", "church", "market", "river", "station")
MESSAGES = (
    "i am running late",
    "see you soon",
    "call me back",
    "i'm on my way",
    "happy birthday",
    "dinner is ready",
    "don't forget the keys",
    "thank you",
    "i will be home at six",
    "where are you",
    "let's meet at the station",
    "the meeting is cancelled",
)
TASKS = (
    "take out the trash",
    "water the plants",
    "buy some milk",
    "call the doctor",
    "feed the cat",
    "walk the dog",
    "check the oven",
    "pay the bills",
    "pick up the kids",
    "lock the door",
)
PARTS_OF_DAY = ("in the morning", "in the afternoon", "in the evening", "at night")
WHAT_IS = ("what is", "what's")


def _pick(rng: np.random.Generator, seq: Sequence[str]) -> str:
    return seq[int(rng.integers(len(seq)))]


def _digits(rng: np.random.Generator, lo: int = 3, hi: int = 8) -> str:
    return " ".join(ONES[int(d)] for d in rng.integers(0, 10, size=int(rng.integers(lo, hi + 1))))


def _clock_time(rng: np.random.Generator) -> str:
    hour = number_to_words(int(rng.integers(1, 13)))
    kind = rng.random()
    if kind < 0.25:
        t = hour + " o'clock"
    elif kind < 0.6:
        t = hour + " " + _pick(rng, ("fifteen", "thirty", "forty five", "oh five", "ten", "twenty"))
    else:
        minute = int(rng.integers(1, 60))
        t = hour + " " + ("oh " + ONES[minute] if minute < 10 else number_to_words(minute))
    if rng.random() < 0.3:
        t += " " + _pick(rng, PARTS_OF_DAY)
    return t


def _on_off(rng: np.random.Generator) -> str:
    return _pick(rng, ("on", "off"))


# Each entry: (weight, template). Weights favour the open-ended templates, whose sentences rarely repeat.
_TEMPLATES: list[tuple[float, Callable[[np.random.Generator], str]]] = [
    (3.0, lambda r: _digits(r)),
    (1.0, lambda r: f"my code is {_digits(r, 4, 6)}"),
    (1.0, lambda r: f"dial {_digits(r, 5, 9)}"),
    (2.0, lambda r: f"turn {_on_off(r)} the {_pick(r, ROOMS)} {_pick(r, DEVICES)}"),
    (1.0, lambda r: f"switch {_on_off(r)} the {_pick(r, DEVICES)} in the {_pick(r, ROOMS)}"),
    (1.0, lambda r: f"dim the {_pick(r, ROOMS)} lights to {number_to_words(10 * int(r.integers(1, 10)))} percent"),
    (1.0, lambda r: f"set the thermostat to {number_to_words(int(r.integers(55, 85)))} degrees"),
    (1.5, lambda r: f"set the alarm for {_clock_time(r)}"),
    (1.0, lambda r: f"wake me up at {_clock_time(r)} {_pick(r, DAYS)}"),
    (1.0, lambda r: f"remind me to {_pick(r, TASKS)} at {_clock_time(r)}"),
    (
        1.0,
        lambda r: (
            f"set a timer for {number_to_words(int(r.integers(2, 91)))} {_pick(r, ('minutes', 'seconds', 'hours'))}"
        ),
    ),
    (1.0, lambda r: f"{_pick(r, ('open', 'close', 'lock'))} the {_pick(r, ROOMS)} {_pick(r, OPENABLES)}"),
    (2.0, lambda r: f"move the {_pick(r, COLORS)} {_pick(r, OBJECTS)} to the {_pick(r, PLACES)}"),
    (
        2.0,
        lambda r: (
            f"put the {_pick(r, COLORS)} {_pick(r, OBJECTS)} {_pick(r, PREPOSITIONS)} "
            f"the {_pick(r, COLORS)} {_pick(r, OBJECTS)}"
        ),
    ),
    (
        1.0,
        lambda r: f"{_pick(r, ('pick up', 'give me', 'where is', 'find'))} the {_pick(r, COLORS)} {_pick(r, OBJECTS)}",
    ),
    (
        1.0,
        lambda r: (
            f"go {_pick(r, ('forward', 'back'))} {number_to_words(int(r.integers(1, 21)))} "
            f"{_pick(r, ('steps', 'meters'))}"
        ),
    ),
    (1.0, lambda r: f"turn {_pick(r, ('left', 'right'))} {number_to_words(15 * int(r.integers(1, 13)))} degrees"),
    (1.0, lambda r: f"call {_pick(r, CONTACTS)}"),
    (1.5, lambda r: f"send a message to {_pick(r, CONTACTS)} saying {_pick(r, MESSAGES)}"),
    (1.5, lambda r: f"{_pick(r, WHAT_IS)} the weather in {_pick(r, CITIES)} {_pick(r, DAYS)}"),
    (1.0, lambda r: f"will it rain in {_pick(r, CITIES)} {_pick(r, DAYS)}"),
    (1.0, lambda r: f"play some {_pick(r, GENRES)} music in the {_pick(r, ROOMS)}"),
    (
        1.0,
        lambda r: _pick(
            r,
            (
                "turn the volume up",
                "turn the volume down",
                "skip this song",
                "pause the music",
                "play the next song",
                "stop",
                "what time is it",
                "what's the date today",
                "read my messages",
                "cancel the alarm",
                "good night",
                "repeat that please",
            ),
        ),
    ),
    (
        1.0,
        lambda r: f"add {number_to_words(int(r.integers(2, 13)))} {_pick(r, COUNTABLE_GROCERIES)} to the shopping list",
    ),
    (0.5, lambda r: f"add {_pick(r, GROCERIES)} to the shopping list"),
    (1.5, lambda r: f"navigate to {number_to_words(int(r.integers(1, 2000)))} {_pick(r, STREETS)} street"),
    (1.0, lambda r: f"how far is {_pick(r, CITIES)} from {_pick(r, CITIES)}"),
]
_WEIGHTS = np.array([w for w, _ in _TEMPLATES]) / sum(w for w, _ in _TEMPLATES)


def random_sentence(rng: np.random.Generator) -> str:
    """One sentence of the grammar: lower-case words and apostrophes only, numbers written as words."""
    _, template = _TEMPLATES[int(rng.choice(len(_TEMPLATES), p=_WEIGHTS))]
    return template(rng)


# What a corpus says. "commands": the voice-assistant grammar above (a few hundred words). "general": open-ended
# English (asr/corpora/sentences.py, ~1,700 words) with a share of commands kept for their numbers, digits and
# times: the text a model needs before it meets people's speech (issue 17).
TEXTS = ("commands", "general")
GENERAL_COMMAND_SHARE = 0.15


def sentence_for(text: str, rng: np.random.Generator) -> str:
    """One utterance's transcript for a corpus of kind ``text`` (one of :data:`TEXTS`)."""
    if text == "commands":
        return random_sentence(rng)
    if text == "general":
        from asr.corpora.sentences import general_sentence

        return random_sentence(rng) if rng.random() < GENERAL_COMMAND_SHARE else general_sentence(rng)
    raise ValueError(f"unknown corpus text {text!r}: expected one of {', '.join(TEXTS)}")


def vocabulary() -> set[str]:
    """Every word the grammar can produce (for tests and for sizing a language model)."""
    words = set(ONES) | {t for t in TENS if t != "_"} | {"hundred", "thousand", "o'clock", "oh"}
    for r in (
        ROOMS,
        DEVICES,
        OPENABLES,
        COLORS,
        OBJECTS,
        PLACES,
        PREPOSITIONS,
        CONTACTS,
        CITIES,
        DAYS,
        GENRES,
        GROCERIES,
        COUNTABLE_GROCERIES,
        STREETS,
        MESSAGES,
        TASKS,
        PARTS_OF_DAY,
    ):
        for phrase in r:
            words.update(phrase.split())
    rng = np.random.default_rng(0)
    for _, template in _TEMPLATES:
        for _ in range(200):
            words.update(template(rng).split())
    return words


# ---------------------------------------------------------------------------------------------------------
# Voices


def split_voices(seed: int, held_out_fraction: float = 0.1) -> dict[str, list[str]]:
    """Assign every accent+variant voice to exactly one split.

    The variants in DEV_VARIANTS / TEST_VARIANTS go wholly to their split; of the remaining combinations a
    seeded ``held_out_fraction`` goes to test and as many again to dev, so test also contains familiar accents
    and familiar variants in combinations never heard together in training.
    """
    held = set(DEV_VARIANTS) | set(TEST_VARIANTS)
    split: dict[str, list[str]] = {
        "dev": [f"{a}+{v}" for a in ENGLISH_ACCENTS for v in DEV_VARIANTS],
        "test": [f"{a}+{v}" for a in ENGLISH_ACCENTS for v in TEST_VARIANTS],
    }
    rest = [f"{a}+{v}" for a in ENGLISH_ACCENTS for v in ENGLISH_VARIANTS if v not in held]
    order = np.random.default_rng([seed, 7919]).permutation(len(rest))
    k = max(1, round(held_out_fraction * len(rest)))
    split["test"] += [rest[i] for i in order[:k]]
    split["dev"] += [rest[i] for i in order[k : 2 * k]]
    split["train"] = [rest[i] for i in order[2 * k :]]
    return {s: sorted(split[s]) for s in SPLITS}


# ---------------------------------------------------------------------------------------------------------
# Rendering


@dataclass
class UtteranceSpec:
    """Everything needed to render one utterance; drawn up front so the result does not depend on --jobs."""

    path: str
    text: str
    voice: str
    rate: int
    pitch: int
    pitch_range: int
    peak_db: float
    noise: str | None  # "white", "pink", "brown" or None
    snr_db: float
    seed: int


def colored_noise(n: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise whose power falls as 1/f^0 (white), 1/f (pink) or 1/f^2 (brown)."""
    exponent = {"white": 0.0, "pink": 0.5, "brown": 1.0}[color]
    n_fft = 1 << max(1, (n - 1).bit_length())  # a power of two: FFTs of prime lengths are slow
    spectrum = np.fft.rfft(rng.standard_normal(n_fft))
    f = np.fft.rfftfreq(n_fft)
    f[0] = f[1]
    noise = np.fft.irfft(spectrum / f**exponent, n_fft)[:n]
    return (noise / (np.sqrt(np.mean(noise**2)) + 1e-12)).astype(np.float32)


def render(
    spec: UtteranceSpec, sample_rate: int = 16000, words: bool = False
) -> np.ndarray | tuple[np.ndarray, list[dict]]:
    """Synthesise, add noise at the drawn SNR and scale to the drawn peak level.

    ``words=True`` also returns eSpeak's word times (:func:`asr.corpora.espeak.synthesize`); noise and gain do
    not move them.
    """
    from asr.corpora.espeak import synthesize

    audio, times = synthesize(
        spec.text,
        voice=spec.voice,
        rate=spec.rate,
        pitch=spec.pitch,
        pitch_range=spec.pitch_range,
        sample_rate=sample_rate,
        words=True,
    )
    if len(audio) == 0:
        raise RuntimeError(f"espeak produced no audio for {spec.text!r} ({spec.voice})")
    if spec.noise is not None:
        rng = np.random.default_rng(spec.seed)
        speech_rms = float(np.sqrt(np.mean(audio**2)))
        audio = audio + colored_noise(len(audio), spec.noise, rng) * speech_rms * 10 ** (-spec.snr_db / 20)
    peak = float(np.abs(audio).max()) + 1e-9
    audio = np.clip(audio * (10 ** (spec.peak_db / 20) / peak), -1.0, 1.0).astype(np.float32)
    return (audio, times) if words else audio


def _render_to_file(spec: UtteranceSpec, sample_rate: int = 16000) -> tuple[int, list[dict]]:
    import soundfile as sf

    audio, times = render(spec, sample_rate, words=True)
    sf.write(spec.path, audio, sample_rate, subtype="PCM_16")
    return len(audio), times


def draw_specs(
    out_dir: str | os.PathLike,
    sizes: dict[str, int],
    seed: int,
    noise_prob: float,
    rate_range: tuple[int, int] = (130, 200),
    snr_range: tuple[float, float] = (5.0, 30.0),
    text: str = "commands",
) -> dict[str, list[UtteranceSpec]]:
    """Draw texts, voices and per-utterance conditions for every split (cheap; no audio)."""
    out_dir = Path(out_dir).resolve()
    voices = split_voices(seed)
    seen: set[str] = set()
    specs: dict[str, list[UtteranceSpec]] = {}
    for split_id, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, split_id])
        specs[split] = []
        for i in range(sizes[split]):
            sentence = sentence_for(text, rng)
            if split != "train":
                # Keep dev/test sentences out of train; give up after a few tries for tiny closed templates.
                for _ in range(50):
                    if sentence not in seen:
                        break
                    sentence = sentence_for(text, rng)
            noise = _pick(rng, ("white", "pink", "brown")) if rng.random() < noise_prob else None
            specs[split].append(
                UtteranceSpec(
                    path=str(out_dir / split / f"{split}-{i:06d}.wav"),
                    text=sentence,
                    voice=_pick(rng, voices[split]),
                    rate=int(rng.integers(rate_range[0], rate_range[1] + 1)),
                    pitch=int(rng.integers(20, 81)),
                    pitch_range=int(rng.integers(20, 81)),
                    peak_db=round(float(rng.uniform(-20.0, -1.0)), 2),
                    noise=noise,
                    snr_db=round(float(rng.uniform(*snr_range)), 2),
                    seed=int(rng.integers(2**31)),
                )
            )
        if split == "train":
            seen = {s.text for s in specs[split]}
    return specs


def _corpus_params(
    sizes: dict[str, int],
    seed: int,
    noise_prob: float,
    sample_rate: int,
    rate_range: tuple[int, int],
    snr_range: tuple[float, float],
    text: str = "commands",
) -> dict:
    # "text" is stamped only when it is not the original grammar, so corpora built before it existed stay valid.
    return {
        "version": CORPUS_VERSION,
        **({} if text == "commands" else {"text": text}),
        "seed": seed,
        "noise_prob": noise_prob,
        "sample_rate": sample_rate,
        "rate_range": list(rate_range),
        "snr_range": list(snr_range),
        **sizes,
    }


def build_corpus(
    out_dir: str | os.PathLike,
    n_train: int = 3000,
    n_dev: int = 300,
    n_test: int = 300,
    seed: int = 0,
    noise_prob: float = 0.3,
    jobs: int = 1,
    sample_rate: int = 16000,
    rate_range: tuple[int, int] = (130, 200),
    snr_range: tuple[float, float] = (5.0, 30.0),
    text: str = "commands",
    force: bool = False,
    verbose: bool = False,
) -> dict[str, Path]:
    """Write ``out_dir/{train,dev,test}/*.wav`` (16-bit) and ``out_dir/{train,dev,test}.jsonl``.

    Returns the manifest paths. If ``out_dir`` already holds a finished corpus with the same parameters nothing
    is done, so recipes can call this unconditionally; a finished corpus with *other* parameters is an error
    unless ``force``, rather than being silently overwritten or silently reused.
    """
    out_dir = Path(out_dir)
    sizes = {"n_train": n_train, "n_dev": n_dev, "n_test": n_test}
    if text not in TEXTS:
        raise ValueError(f"unknown corpus text {text!r}: expected one of {', '.join(TEXTS)}")
    params = _corpus_params(sizes, seed, noise_prob, sample_rate, tuple(rate_range), tuple(snr_range), text)
    manifests = {s: out_dir / f"{s}.jsonl" for s in SPLITS}
    params_path = out_dir / PARAMS_FILE
    if params_path.is_file():
        old = json.loads(params_path.read_text())
        if old == params and all(p.is_file() for p in manifests.values()):
            if verbose:
                print(f"synthetic corpus in {out_dir} is up to date", file=sys.stderr)
            return manifests
        if not force:
            raise FileExistsError(
                f"{out_dir} holds a synthetic corpus built with other parameters ({old}); "
                "use another output folder or force=True / --force to rebuild it"
            )
        params_path.unlink()
        for split in SPLITS:
            for wav in (out_dir / split).glob(f"{split}-*.wav"):
                wav.unlink()

    specs = draw_specs(
        out_dir, {s: sizes[f"n_{s}"] for s in SPLITS}, seed, noise_prob, tuple(rate_range), tuple(snr_range), text
    )
    all_specs = [sp for s in SPLITS for sp in specs[s]]
    for split in SPLITS:
        (out_dir / split).mkdir(parents=True, exist_ok=True)
    start = time.time()
    rendered = _render_all(all_specs, sample_rate, jobs, verbose)
    if verbose:
        print(f"rendered {len(all_specs)} utterances in {time.time() - start:.1f}s", file=sys.stderr)

    offset = 0
    for split in SPLITS:
        utts = []
        for spec, (n, times) in zip(specs[split], rendered[offset : offset + len(specs[split])]):
            # "words": where eSpeak says each word starts and ends, for checking word timestamps.
            utts.append(
                Utterance(
                    spec.path,
                    round(n / sample_rate, 4),
                    spec.text,
                    {"speaker": spec.voice, "rate": spec.rate, "pitch": spec.pitch, "words": times},
                )
            )
        offset += len(specs[split])
        write_manifest(manifests[split], utts)
    # Written last: its presence marks a finished corpus.
    params_path.write_text(json.dumps(params, indent=2) + "\n")
    return manifests


def _render_all(specs: list[UtteranceSpec], sample_rate: int, jobs: int, verbose: bool) -> list[tuple[int, list[dict]]]:
    total = len(specs)
    step = max(1, total // 10)
    lengths: list[tuple[int, list[dict]]] = []
    if jobs <= 1 or total < 50:
        it = (_render_to_file(s, sample_rate) for s in specs)
        pool = None
    else:
        import functools
        import multiprocessing as mp

        # spawn, not fork: each worker must initialise its own copy of eSpeak's global state.
        pool = mp.get_context("spawn").Pool(jobs)
        it = pool.imap(functools.partial(_render_to_file, sample_rate=sample_rate), specs, chunksize=16)
    try:
        for n in it:
            lengths.append(n)
            if verbose and total >= 100 and (len(lengths) % step == 0 or len(lengths) == total):
                print(f"  {len(lengths)}/{total}", file=sys.stderr)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return lengths


def corpus_summary(out_dir: str | os.PathLike) -> dict[str, dict[str, float]]:
    """Utterances, hours, mean duration and voice count per split, read back from the manifests."""
    summary = {}
    for split in SPLITS:
        utts = read_manifest(Path(out_dir) / f"{split}.jsonl")
        seconds = sum(u.duration for u in utts)
        summary[split] = {
            "utterances": len(utts),
            "hours": seconds / 3600,
            "mean_seconds": seconds / len(utts) if utts else 0.0,
            "voices": len({u.extra.get("speaker") for u in utts}),
        }
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """``asr synth``: build (or confirm) a synthetic corpus and print its summary."""
    p = argparse.ArgumentParser(
        prog="asr synth", description=__doc__.split("\n\n")[0], formatter_class=DefaultsHelpFormatter
    )
    p.add_argument("-o", "--output-dir", metavar="DIR", help="output folder (wavs and train/dev/test.jsonl); required")
    p.add_argument("--out", dest="output_dir", help=argparse.SUPPRESS)  # the old spelling, kept for old scripts
    p.add_argument("--train", type=int, default=3000, help="training utterances (default 3000)")
    p.add_argument("--dev", type=int, default=300, help="dev utterances (default 300)")
    p.add_argument("--test", type=int, default=300, help="test utterances (default 300)")
    p.add_argument("--seed", type=int, default=0, help="seed of the texts, voices and noise chosen")
    p.add_argument("--noise-prob", type=float, default=0.3, help="share of utterances with background noise")
    p.add_argument(
        "--text",
        choices=TEXTS,
        default="commands",
        help="what is said: voice-assistant commands (a few hundred words), or general English (narration, "
        "questions, speech, numbers, dates, names; ~1,700 words), the pre-training text for real speech",
    )
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    p.add_argument(
        "--tiny",
        action="store_true",
        help=f"a few utterances per split ({TINY_SIZES}), for smoke tests; overrides the sizes",
    )
    p.add_argument("--force", action="store_true", help="rebuild a corpus made with other parameters")
    args = p.parse_args(argv)
    if args.output_dir is None:
        p.error("the following arguments are required: -o/--output-dir")
    if not 0.0 <= args.noise_prob <= 1.0:
        p.error("--noise-prob must be between 0 and 1")
    sizes = TINY_SIZES if args.tiny else {"n_train": args.train, "n_dev": args.dev, "n_test": args.test}
    if min(sizes.values()) < 0:
        p.error("split sizes must be non-negative")
    start = time.time()
    try:
        build_corpus(
            args.output_dir,
            seed=args.seed,
            noise_prob=args.noise_prob,
            text=args.text,
            jobs=args.jobs,
            force=args.force,
            verbose=True,
            **sizes,
        )
    except ImportError as e:  # the synth extra (espeakng-loader) is missing
        raise EspeakError(str(e)) from None
    print(f"synthetic corpus: {args.output_dir} ({time.time() - start:.1f}s)")
    for split, s in corpus_summary(args.output_dir).items():
        print(
            f"  {split:5s} {s['utterances']:6d} utterances  {s['hours']:6.2f} h  "
            f"{s['mean_seconds']:4.1f} s/utt  {s['voices']:3d} voices"
        )
    return 0
