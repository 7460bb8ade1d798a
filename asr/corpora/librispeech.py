"""LibriSpeech (OpenSLR resource 12) and Mini LibriSpeech (resource 31): download, unpack, make manifests.

Each part is one archive whose members all start with ``LibriSpeech/<split>/``, so every part unpacks into the
same ``<data-dir>/LibriSpeech`` tree. A split's manifest is written beside its folder
(``<data-dir>/LibriSpeech/<split>.jsonl``) with paths relative to it, so the tree can be moved as a whole.
Mini LibriSpeech (``train-clean-5``, 5.3 h of 28 speakers, and the smaller ``dev-clean-2``; the ``mini`` group) is the subset Kaldi's
and ESPnet's mini_librispeech recipes train on: real read speech small enough for a laptop.

    asr librispeech download --parts dev-clean test-clean     # fetch + verify MD5
    asr librispeech extract  --parts dev-clean test-clean
    asr librispeech prepare  --parts dev-clean test-clean     # manifests + summary
    asr librispeech prepare  --parts train-clean-5 --source /corpora/LibriSpeech   # an unpacked copy in place
    asr librispeech split    --manifest data/LibriSpeech/train-clean-5.jsonl --dev-speakers 2 --test-speakers 4
"""

from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path
from typing import Iterable

from asr.corpora.download import data_dir, download, extract, openslr_url
from asr.corpora.inventory import format_summary, probe_headers, read_trans_txt, summarize
from asr.data.audio import AudioError
from asr.data.manifest import Utterance, read_manifest, write_manifest
from asr.data.tokenizer import CharTokenizer, normalize_text
from asr.errors import CorpusError, UsageError
from asr.help_format import DefaultsHelpFormatter

RESOURCE = 12
# Published checksums (https://www.openslr.org/12/, also listed by torchaudio and lhotse).
PARTS = {
    "dev-clean": "42e2234ba48799c1f50f24a7926300a1",
    "dev-other": "c8d0bcc9cca99d4f8b62fcc847357931",
    "test-clean": "32fa31d27d2e1cad72775fee3f4849a9",
    "test-other": "fb5a50374b501bb3bac4815ee91d3135",
    "train-clean-100": "2a93770f6d5c6c964bc36631d331a522",
    "train-clean-360": "c0e676e450a7ff2f54aeade5171606fa",
    "train-other-500": "d1a0fd59409feb2c614ce4d30c387708",
    # Mini LibriSpeech, OpenSLR 31 (https://www.openslr.org/31/, resources/31/md5sum.txt). The sums could not be
    # fetched from OpenSLR while this was written (no network); they are the ones PaddlePaddle's DeepSpeech
    # (data/librispeech/mini_librispeech.py) and several other public downloaders pin, all agreeing. The
    # archives are 332,954,390 bytes (train-clean-5, 1,519 utterances, 28 speakers) and 126,046,265 bytes
    # (dev-clean-2) as those sources record them; a mismatch stops with both sums and keeps the file aside.
    "train-clean-5": "5df7d4e78065366204ca6845bb08f490",
    "dev-clean-2": "6d7ab67ac6a1d2c993d050e16d61080d",
}
# The OpenSLR resource each part is published under (RESOURCE unless listed).
PART_RESOURCES = {"train-clean-5": 31, "dev-clean-2": 31}
# Shorthands for the usual selections, accepted wherever a part name is.
GROUPS = {
    "eval": ("dev-clean", "dev-other", "test-clean", "test-other"),
    "100h": ("train-clean-100",),
    "460h": ("train-clean-100", "train-clean-360"),
    "960h": ("train-clean-100", "train-clean-360", "train-other-500"),
    "all": tuple(p for p in PARTS if p not in PART_RESOURCES),
    "mini": ("train-clean-5", "dev-clean-2"),
}
DEFAULT_PARTS = ("eval", "100h")


def expand_parts(names: Iterable[str]) -> list[str]:
    """Resolve part names and group shorthands to an ordered list of distinct parts."""
    out: list[str] = []
    for name in names:
        if name not in PARTS and name not in GROUPS:
            raise UsageError(f"unknown LibriSpeech part {name!r}; choose from {', '.join([*PARTS, *GROUPS])}")
        for part in GROUPS.get(name, (name,)):
            if part not in out:
                out.append(part)
    return out


def archive_path(part: str, root: str | os.PathLike) -> Path:
    return Path(root) / "downloads" / f"{part}.tar.gz"


def download_librispeech(
    root: str | os.PathLike, parts: Iterable[str] = DEFAULT_PARTS, mirror: str | None = None, progress: bool = True
) -> list[Path]:
    """Fetch the parts' archives into ``<root>/downloads``, each verified against its published MD5."""
    return [
        download(
            openslr_url(PART_RESOURCES.get(part, RESOURCE), f"{part}.tar.gz", mirror),
            archive_path(part, root),
            md5=PARTS[part],
            progress=progress,
        )
        for part in expand_parts(parts)
    ]


def extract_librispeech(root: str | os.PathLike, parts: Iterable[str] = DEFAULT_PARTS) -> list[Path]:
    """Unpack downloaded parts; returns their split folders ``<root>/LibriSpeech/<part>``."""
    split_dirs = []
    for part in expand_parts(parts):
        archive = archive_path(part, root)
        if not archive.is_file():
            raise FileNotFoundError(f"{archive}: not downloaded yet (run the download step first)")
        extract(archive, root)
        split_dir = Path(root) / "LibriSpeech" / part
        if not split_dir.is_dir():
            raise FileNotFoundError(f"{archive}: unpacked, but {split_dir} is missing; is it a LibriSpeech archive?")
        split_dirs.append(split_dir)
    return split_dirs


def read_split(split_dir: str | os.PathLike, workers: int = 16, problems: list[str] | None = None) -> list[Utterance]:
    """Utterances of one split folder (``<spk>/<chapter>/<spk>-<chapter>.trans.txt`` + ``.flac``), sorted by id.

    An utterance whose audio is missing or unreadable, or whose text has characters outside the default
    alphabet, is left out and described in ``problems`` rather than failing the whole split.
    """
    split_dir = Path(split_dir)
    problems = problems if problems is not None else []
    tokenizer = CharTokenizer()
    entries: list[tuple[str, Path, str, str, str]] = []
    for trans in sorted(split_dir.glob("*/*/*.trans.txt")):
        speaker, chapter = trans.parent.parent.name, trans.parent.name
        for lineno, utt_id, text in read_trans_txt(trans):
            text = normalize_text(text)
            oov = tokenizer.oov_chars(text)
            if oov:
                problems.append(f"{trans}:{lineno}: {utt_id}: characters outside the alphabet {oov}")
                continue
            entries.append((utt_id, trans.parent / f"{utt_id}.flac", text, speaker, chapter))

    utterances: list[Utterance] = []
    for (utt_id, path, text, speaker, chapter), info in zip(entries, probe_headers([e[1] for e in entries], workers)):
        if isinstance(info, AudioError):
            problems.append(str(info))
        elif info.duration <= 0:
            problems.append(f"{path}: no audio samples")
        else:
            extra = {"id": utt_id, "speaker": speaker, "chapter": chapter}
            utterances.append(Utterance(str(path), round(info.duration, 4), text, extra))
    utterances.sort(key=lambda u: u.extra["id"])
    return utterances


def summary_path(manifest: str | os.PathLike) -> Path:
    """``<part>.summary.json`` beside ``<part>.jsonl``: the counts and every utterance left out."""
    return Path(manifest).with_suffix(".summary.json")


def prepare_librispeech(
    root: str | os.PathLike,
    parts: Iterable[str] = DEFAULT_PARTS,
    manifest_dir: str | os.PathLike | None = None,
    workers: int = 16,
    source: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """Write ``<part>.jsonl`` and ``<part>.summary.json`` per part; returns the manifests by part.

    ``source`` is an already unpacked ``LibriSpeech`` folder elsewhere (a shared disk, a copy from another
    machine): its splits are read in place, never copied, and the manifests (in ``manifest_dir``, else
    ``<root>/LibriSpeech``) then hold absolute paths to it.
    """
    corpus = Path(source) if source else Path(root) / "LibriSpeech"
    if source and not corpus.is_dir():
        raise CorpusError(f"--source {corpus}: no such folder (give the LibriSpeech folder holding the split folders)")
    out_dir = Path(manifest_dir) if manifest_dir else Path(root) / "LibriSpeech"
    manifests = {}
    for part in expand_parts(parts):
        split_dir = corpus / part
        if not split_dir.is_dir():
            if source:
                raise CorpusError(f"{split_dir}: not found in --source {corpus} (it has: {_split_names(corpus)})")
            raise FileNotFoundError(f"{split_dir}: not found (run the download and extract steps first)")
        problems: list[str] = []
        utterances = read_split(split_dir, workers=workers, problems=problems)
        if not utterances:
            raise CorpusError(
                f"{split_dir}: no usable utterances found" + (f" (first problem: {problems[0]})" if problems else "")
            )
        manifest = out_dir / f"{part}.jsonl"
        write_manifest(manifest, utterances)
        summary = summarize(part, manifest, utterances, problems)
        summary_path(manifest).write_text(json.dumps(summary, indent=2) + "\n")
        manifests[part] = manifest
    return manifests


def _split_names(corpus: Path) -> str:
    names = sorted(p.name for p in corpus.iterdir() if p.is_dir() and p.name in PARTS)
    return ", ".join(names) or "no LibriSpeech split folder"


SPLIT_SETS = ("train", "dev", "test")


def split_path(manifest: str | os.PathLike, name: str) -> Path:
    """``<part>.<name>.jsonl`` beside ``<part>.jsonl`` (``name``: train, dev, test or split for the summary)."""
    manifest = Path(manifest)
    stem = manifest.name[: -len(".jsonl")] if manifest.name.endswith(".jsonl") else manifest.stem
    return manifest.with_name(f"{stem}.{name}.json" if name == "split" else f"{stem}.{name}.jsonl")


def read_speaker_genders(path: str | os.PathLike) -> dict[str, str]:
    """Speaker id -> ``F``/``M`` from LibriSpeech's ``SPEAKERS.TXT`` (``ID | SEX | SUBSET | MINUTES | NAME``)."""
    genders = {}
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(";") or "|" not in line:
            continue
        fields = [f.strip() for f in line.split("|")]
        if len(fields) >= 2 and fields[0] and fields[1] in ("F", "M"):
            genders[fields[0]] = fields[1]
    return genders


def _speaker_count(value: str | int, total: int, flag: str) -> int | None:
    """``N`` speakers, ``P%`` of ``total`` (at least one), or None for ``rest``."""
    text = str(value).strip()
    if text == "rest":
        return None
    try:
        n = max(1, round(total * float(text[:-1]) / 100)) if text.endswith("%") else int(text)
    except ValueError:
        raise UsageError(f"{flag} must be a number of speakers, a percentage (25%) or 'rest'; got {value!r}") from None
    if n < 0:
        raise UsageError(f"{flag} must be 0 or more, got {value!r}")
    return n


def choose_speakers(
    speakers: Iterable[str], n_dev: int, n_test: int, seed: int = 0, genders: dict[str, str] | None = None
) -> dict[str, list[str]]:
    """Speaker-disjoint ``{"train", "dev", "test"}``: ``n_dev`` and ``n_test`` held-out speakers, the rest train.

    The held-out speakers are drawn (seeded) alternately from each gender in ``genders`` (women first, as
    LibriSpeech has more of them), so a 4-speaker test set is 2 women and 2 men rather than whatever a draw
    gives: WER differs more between speakers than between most settings, and a skewed test set would say
    more about who was drawn than about the model.
    """
    speakers = sorted(set(speakers), key=lambda s: (len(s), s))
    genders = genders or {}
    rng = random.Random(seed)
    pools: dict[str, list[str]] = {}
    for s in speakers:
        pools.setdefault(genders.get(s, "?"), []).append(s)
    for pool in pools.values():
        rng.shuffle(pool)
    order: list[str] = []
    keys = sorted(pools, key=lambda g: ({"F": 0, "M": 1}.get(g, 2), g))
    while any(pools.values()):
        for g in keys:
            if pools[g]:
                order.append(pools[g].pop())
    dev, test = order[:n_dev], order[n_dev : n_dev + n_test]
    train = order[n_dev + n_test :]
    key = speakers.index
    return {"train": sorted(train, key=key), "dev": sorted(dev, key=key), "test": sorted(test, key=key)}


def split_by_speaker(
    manifest: str | os.PathLike,
    dev_speakers: str | int,
    test_speakers: str | int,
    seed: int = 0,
    speakers_file: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """Cut one prepared split into speaker-disjoint train/dev/test manifests beside it; returns those written.

    For a corpus that comes without held-out speakers of its own (train-clean-5 alone, when dev-clean-2 is not
    at hand), or to cut dev-clean-2 into a tuning half and a test half so that LM weights are never tuned on
    the set they are scored on. ``dev_speakers``/``test_speakers``: a count, a percentage (``"25%"``) or
    ``"rest"`` (all the others; then no train set). Genders come from ``speakers_file``, else the
    ``SPEAKERS.TXT`` of the corpus the audio is in, when there is one. ``<part>.split.json`` records which
    speakers went where, with utterances and hours per set.
    """
    manifest = Path(manifest)
    if not manifest.is_file():
        raise CorpusError(f"{manifest}: no such manifest (run the prepare step first)")
    utterances = read_manifest(manifest)
    by_speaker: dict[str, list[Utterance]] = {}
    for i, u in enumerate(utterances, 1):
        speaker = u.extra.get("speaker")
        if not speaker:
            raise CorpusError(f"{manifest}:{i}: no speaker field (a manifest written by `asr librispeech prepare`?)")
        by_speaker.setdefault(str(speaker), []).append(u)
    total = len(by_speaker)
    n_dev = _speaker_count(dev_speakers, total, "--dev-speakers")
    n_test = _speaker_count(test_speakers, total, "--test-speakers")
    if n_dev is None:
        raise UsageError("--dev-speakers cannot be 'rest'; give a count or a percentage")
    if n_test is None:
        n_test = total - n_dev
    if n_dev + n_test > total or n_test < 1 or (n_dev + n_test == total and str(test_speakers) != "rest"):
        raise UsageError(
            f"{manifest}: {total} speakers cannot give {n_dev} dev and {n_test} test speakers"
            + ("" if str(test_speakers) == "rest" else " and leave some to train on")
            + " (use --test-speakers rest to put all the others in test)"
        )
    if speakers_file is None:
        # <corpus>/<part>/<speaker>/<chapter>/<id>.flac: SPEAKERS.TXT sits in <corpus>.
        parents = Path(utterances[0].audio_filepath).resolve().parents
        guess = parents[3] / "SPEAKERS.TXT" if len(parents) > 3 else None
        speakers_file = guess if guess is not None and guess.is_file() else None
    genders = read_speaker_genders(speakers_file) if speakers_file else {}
    chosen = choose_speakers(by_speaker, n_dev, n_test, seed, genders)
    written: dict[str, Path] = {}
    summary: dict[str, object] = {"manifest": str(manifest), "seed": seed, "speakers_file": str(speakers_file or "")}
    for name in SPLIT_SETS:
        utts = sorted((u for s in chosen[name] for u in by_speaker[s]), key=lambda u: str(u.extra.get("id", "")))
        out = split_path(manifest, name)
        if not utts:
            out.unlink(missing_ok=True)  # no stale set from an earlier split with other counts
            continue
        write_manifest(out, utts)
        written[name] = out
        summary[name] = {
            "manifest": str(out),
            "speakers": chosen[name],
            "genders": "".join(genders.get(s, "?") for s in chosen[name]),
            "utterances": len(utts),
            "hours": round(sum(u.duration for u in utts) / 3600, 3),
        }
    split_path(manifest, "split").write_text(json.dumps(summary, indent=2) + "\n")
    return written


def format_split(summary_file: str | os.PathLike) -> str:
    s = json.loads(Path(summary_file).read_text())
    rows = [f"{'set':<6} {'speakers':>8} {'utterances':>10} {'hours':>7}  speakers (sex)"]
    for name in SPLIT_SETS:
        if name in s:
            t = s[name]
            who = " ".join(f"{spk}({g})" for spk, g in zip(t["speakers"], t["genders"]))
            rows.append(f"{name:<6} {len(t['speakers']):>8} {t['utterances']:>10} {t['hours']:>7.2f}  {who}")
    return "\n".join(rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr librispeech", description=__doc__, formatter_class=DefaultsHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_ in (
        ("download", "fetch archives and verify their MD5"),
        ("extract", "unpack downloaded archives"),
        ("prepare", "write one manifest per split and print a summary"),
        ("all", "download, extract and prepare"),
    ):
        p = sub.add_parser(name, help=help_, formatter_class=DefaultsHelpFormatter)
        p.add_argument(
            "--parts",
            nargs="+",
            default=list(DEFAULT_PARTS),
            help=f"parts or groups ({', '.join(GROUPS)}); default: {' '.join(DEFAULT_PARTS)}",
        )
        p.add_argument("--data-dir", help="where corpora live (default: $ASR_DATA_DIR or ./data)")
        p.add_argument("--mirror", help="OpenSLR base URL (default: $ASR_OPENSLR_MIRROR or www.openslr.org)")
        p.add_argument("--manifest-dir", help="where manifests go (default: <data-dir>/LibriSpeech)")
        p.add_argument("--workers", type=int, default=16, help="parallel header reads (default 16)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        if name in ("prepare", "all"):
            p.add_argument(
                "--source",
                help="an unpacked LibriSpeech folder to read the splits from in place (prepare only; "
                "default: <data-dir>/LibriSpeech)",
            )
    p = sub.add_parser("split", help="cut a prepared split into speaker-disjoint train/dev/test manifests")
    p.add_argument("--manifest", required=True, help="a manifest written by prepare, e.g. <dir>/train-clean-5.jsonl")
    p.add_argument("--dev-speakers", default="2", help="speakers held out for dev: N, P%% or rest (default 2)")
    p.add_argument("--test-speakers", default="4", help="speakers held out for test: N, P%% or rest (default 4)")
    p.add_argument("--seed", type=int, default=0, help="which speakers are drawn (default 0)")
    p.add_argument("--speakers-file", help="SPEAKERS.TXT for the genders (default: the corpus's own, if found)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``asr librispeech``; errors go up to :func:`asr.cli.main` (``asr: error: ...``, status 2)."""
    args = build_parser().parse_args(argv)
    if args.command == "split":
        written = split_by_speaker(args.manifest, args.dev_speakers, args.test_speakers, args.seed, args.speakers_file)
        print(format_split(split_path(args.manifest, "split")))
        for name, path in written.items():
            print(f"{name}: {path}")
        return 0
    root = data_dir(args.data_dir)
    parts = expand_parts(args.parts)
    if args.command in ("download", "all"):
        for part, archive in zip(parts, download_librispeech(root, parts, args.mirror, not args.no_progress)):
            print(f"{part}: {archive}")
    source = getattr(args, "source", None)
    if source and args.command == "all":
        raise UsageError("--source reads an unpacked copy in place: use it with prepare, not all")
    if args.command in ("extract", "all"):
        for part, split_dir in zip(parts, extract_librispeech(root, parts)):
            print(f"{part}: {split_dir}")
    if args.command in ("prepare", "all"):
        manifests = prepare_librispeech(root, parts, args.manifest_dir, args.workers, source)
        print(format_summary([json.loads(summary_path(m).read_text()) for m in manifests.values()]))
    return 0
