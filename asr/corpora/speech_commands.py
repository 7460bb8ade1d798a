"""Google Speech Commands v2: download, unpack and split into manifests, as 35 words or the classic 12 classes.

The archive unpacks (without a top folder) into ``<data-dir>/speech_commands_v0.02/``: one folder per word of
1 s 16 kHz clips, ``validation_list.txt`` and ``testing_list.txt`` (the official split, by speaker hash), and
``_background_noise_/`` with a few minutes of noise. Manifests are written into that folder:

* ``{train,validation,test}_35words.jsonl``: every clip, transcript = the spoken word.
* ``{train,validation,test}_12class.jsonl``: the protocol of the original paper (Warden 2018) and TensorFlow's
  ``input_data.py``: the 10 words yes/no/up/down/left/right/on/off/stop/go, an "unknown" class (other words, text
  ``unknown``) and a "silence" class of 1 s clips cut from the background noise. Each of the two extra classes
  gets 10% as many clips as the 10 words have in that split (``--unknown-percentage``/``--silence-percentage``).
  Silence has the empty transcript: CTC accepts empty targets, and "nothing was said" is exactly what a
  recogniser should output for noise; an invented word would teach it to hallucinate one.
* ``noise.jsonl``: the background noise files, for noise augmentation.

    asr speech-commands download
    asr speech-commands extract
    asr speech-commands prepare --protocol 35     # or --protocol 12
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from asr.corpora.download import data_dir, download, extract
from asr.corpora.inventory import format_summary, probe_headers, summarize
from asr.data.audio import AudioError
from asr.data.manifest import Utterance, write_manifest
from asr.errors import UsageError
from asr.help_format import DefaultsHelpFormatter

ARCHIVE = "speech_commands_v0.02.tar.gz"
MD5 = "6b74f3901214cb2c2934e98196829835"  # as published with torchaudio's SPEECHCOMMANDS
MIRROR_ENV = "ASR_SPEECH_COMMANDS_MIRROR"
DEFAULT_MIRROR = "http://download.tensorflow.org/data"
CORPUS_DIR = "speech_commands_v0.02"
SPLITS = ("train", "validation", "test")
NOISE_DIR = "_background_noise_"
SILENCE_DIR = "_silence_"

WORDS = (
    "backward",
    "bed",
    "bird",
    "cat",
    "dog",
    "down",
    "eight",
    "five",
    "follow",
    "forward",
    "four",
    "go",
    "happy",
    "house",
    "learn",
    "left",
    "marvin",
    "nine",
    "no",
    "off",
    "on",
    "one",
    "right",
    "seven",
    "sheila",
    "six",
    "stop",
    "three",
    "tree",
    "two",
    "up",
    "visual",
    "wow",
    "yes",
    "zero",
)
CORE_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN_TEXT = "unknown"
SILENCE_TEXT = ""
# Where each split cuts its silence clips, as fractions of every noise file, so no noise is shared across splits.
_NOISE_REGIONS = {"train": (0.0, 0.8), "validation": (0.8, 0.9), "test": (0.9, 1.0)}


def corpus_root(root: str | os.PathLike) -> Path:
    return Path(root) / CORPUS_DIR


def download_speech_commands(root: str | os.PathLike, mirror: str | None = None, progress: bool = True) -> Path:
    """Fetch the archive into ``<root>/downloads`` and verify its MD5."""
    base = (mirror or os.environ.get(MIRROR_ENV) or DEFAULT_MIRROR).rstrip("/")
    return download(f"{base}/{ARCHIVE}", Path(root) / "downloads" / ARCHIVE, md5=MD5, progress=progress)


def extract_speech_commands(root: str | os.PathLike) -> Path:
    """Unpack the downloaded archive; returns the corpus folder ``<root>/speech_commands_v0.02``."""
    archive = Path(root) / "downloads" / ARCHIVE
    if not archive.is_file():
        raise FileNotFoundError(f"{archive}: not downloaded yet (run the download step first)")
    return extract(archive, corpus_root(root))


def official_split(corpus: Path) -> dict[str, str]:
    """Relative clip path ("word/file.wav") -> split, for every clip of every word folder."""
    listed: dict[str, str] = {}
    for split, name in (("validation", "validation_list.txt"), ("test", "testing_list.txt")):
        path = corpus / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; is {corpus} an unpacked Speech Commands v2?")
        for line in path.read_text().split():
            listed[line.strip()] = split
    clips = {}
    for word_dir in sorted(p for p in corpus.iterdir() if p.is_dir() and not p.name.startswith("_")):
        for wav in sorted(word_dir.glob("*.wav")):
            rel = f"{word_dir.name}/{wav.name}"
            clips[rel] = listed.get(rel, "train")
    return clips


def _probe_clips(corpus: Path, items: list[tuple[str, str]], workers: int, problems: list[str]) -> list[Utterance]:
    """Utterances of ``(clip path relative to the corpus, text)`` items whose audio header reads."""
    utterances = []
    for (rel, text), info in zip(items, probe_headers([corpus / rel for rel, _ in items], workers)):
        if isinstance(info, AudioError):
            problems.append(str(info))
            continue
        word, name = rel.split("/", 1)
        extra = {"id": rel[:-4], "word": word, "speaker": name.split("_nohash_")[0]}
        utterances.append(Utterance(str(corpus / rel), round(info.duration, 4), text, extra))
    return utterances


def noise_files(corpus: Path) -> list[Path]:
    return sorted((corpus / NOISE_DIR).glob("*.wav"))


def cut_silence(corpus: Path, split: str, count: int, seed: int = 0) -> list[Utterance]:
    """Write ``count`` 1 s clips cut at random places (and random gain) from the split's share of the noise.

    A random gain in [0, 1] covers everything from digital silence to the full noise level, which is what a
    "nothing was said" class has to accept.
    """
    rng = random.Random(f"{seed}-{split}")
    start_frac, end_frac = _NOISE_REGIONS[split]
    sources = []
    for path in noise_files(corpus):
        audio, sr = sf.read(path, dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        lo, hi = int(start_frac * len(audio)), int(end_frac * len(audio))
        if hi - lo >= sr:
            sources.append((path.stem, audio[lo:hi], sr))
    if count and not sources:
        raise FileNotFoundError(f"{corpus / NOISE_DIR}: no noise file long enough to cut silence clips from")
    out_dir = corpus / SILENCE_DIR / split
    out_dir.mkdir(parents=True, exist_ok=True)
    utterances = []
    for i in range(count):
        stem, audio, sr = sources[rng.randrange(len(sources))]
        start = rng.randrange(len(audio) - sr + 1)
        clip = np.clip(audio[start : start + sr] * rng.uniform(0.0, 1.0), -1.0, 1.0)
        path = out_dir / f"{stem}_{i:05d}.wav"
        sf.write(path, clip, sr, subtype="PCM_16")
        utterances.append(
            Utterance(str(path), 1.0, SILENCE_TEXT, {"id": f"{SILENCE_DIR}/{split}/{path.stem}", "word": SILENCE_DIR})
        )
    return utterances


def summary_path(root: str | os.PathLike, protocol: str) -> Path:
    """``summary_<protocol>.json`` in the corpus folder: counts per split and every clip left out."""
    return corpus_root(root) / f"summary_{protocol}.json"


def prepare_speech_commands(
    root: str | os.PathLike,
    protocol: str = "35",
    unknown_percentage: float = 10.0,
    silence_percentage: float = 10.0,
    seed: int = 0,
    workers: int = 16,
) -> dict[str, Path]:
    """Write the manifests of ``protocol`` ("35" or "12") and ``noise.jsonl``; returns them by split (and "noise")."""
    if protocol not in ("35", "12"):
        raise UsageError(f"protocol must be '35' or '12', got {protocol!r}")
    corpus = corpus_root(root)
    if not corpus.is_dir():
        raise FileNotFoundError(f"{corpus}: not found (run the download and extract steps first)")
    clips = official_split(corpus)
    summaries, manifests = [], {}
    for split in SPLITS:
        problems: list[str] = []
        rels = [rel for rel, s in clips.items() if s == split]
        if protocol == "35":
            utterances = _probe_clips(corpus, [(rel, rel.split("/")[0]) for rel in rels], workers, problems)
        else:
            rng = random.Random(f"{seed}-{split}-unknown")
            core = [(rel, rel.split("/")[0]) for rel in rels if rel.split("/")[0] in CORE_WORDS]
            others = [rel for rel in rels if rel.split("/")[0] not in CORE_WORDS]
            n_unknown = min(len(others), math.ceil(len(core) * unknown_percentage / 100))
            unknown = [(rel, UNKNOWN_TEXT) for rel in sorted(rng.sample(others, n_unknown))]
            utterances = _probe_clips(corpus, core + unknown, workers, problems)
            utterances += cut_silence(corpus, split, math.ceil(len(core) * silence_percentage / 100), seed)
        manifests[split] = corpus / f"{split}_{'35words' if protocol == '35' else '12class'}.jsonl"
        write_manifest(manifests[split], utterances)
        counts: dict[str, int] = {}
        for u in utterances:
            counts[u.text] = counts.get(u.text, 0) + 1
        summaries.append(
            {**summarize(split, manifests[split], utterances, problems), "classes": dict(sorted(counts.items()))}
        )
    noise = []
    for path, info in zip(noise_files(corpus), probe_headers(noise_files(corpus), workers)):
        if isinstance(info, AudioError):
            print(f"warning: {info}", file=sys.stderr)
        else:
            noise.append(Utterance(str(path), round(info.duration, 4), "", {"id": path.stem}))
    manifests["noise"] = corpus / "noise.jsonl"
    write_manifest(manifests["noise"], noise)
    summary_path(root, protocol).write_text(json.dumps(summaries, indent=2) + "\n")
    return manifests


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asr speech-commands", description=__doc__, formatter_class=DefaultsHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_ in (
        ("download", "fetch the archive and verify its MD5"),
        ("extract", "unpack it"),
        ("prepare", "write manifests"),
        ("all", "download, extract and prepare"),
    ):
        p = sub.add_parser(name, help=help_, formatter_class=DefaultsHelpFormatter)
        p.add_argument("--data-dir", help="where corpora live (default: $ASR_DATA_DIR or ./data)")
        p.add_argument("--mirror", help=f"base URL holding {ARCHIVE} (default: ${MIRROR_ENV} or {DEFAULT_MIRROR})")
        p.add_argument(
            "--protocol",
            choices=("35", "12"),
            default="35",
            help="35 words, or the classic 10 words + unknown + silence (default 35)",
        )
        p.add_argument(
            "--unknown-percentage", type=float, default=10.0, help="12-class protocol: share of 'unknown' examples"
        )
        p.add_argument(
            "--silence-percentage", type=float, default=10.0, help="12-class protocol: share of silence examples"
        )
        p.add_argument("--seed", type=int, default=0, help="seed of the unknown/silence sampling")
        p.add_argument("--workers", type=int, default=16, help="parallel header reads (default 16)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``asr speech-commands``; errors go up to :func:`asr.cli.main` (``asr: error: ...``, status 2)."""
    args = build_parser().parse_args(argv)
    root = data_dir(args.data_dir)
    if args.command in ("download", "all"):
        print(download_speech_commands(root, args.mirror, progress=not args.no_progress))
    if args.command in ("extract", "all"):
        print(extract_speech_commands(root))
    if args.command in ("prepare", "all"):
        prepare_speech_commands(
            root, args.protocol, args.unknown_percentage, args.silence_percentage, args.seed, args.workers
        )
        print(format_summary(json.loads(summary_path(root, args.protocol).read_text())))
    return 0
