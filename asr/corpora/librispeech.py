"""LibriSpeech (OpenSLR resource 12): download, unpack and turn each split into a manifest.

Each part is one archive whose members all start with ``LibriSpeech/<split>/``, so every part unpacks into the
same ``<data-dir>/LibriSpeech`` tree. A split's manifest is written beside its folder
(``<data-dir>/LibriSpeech/<split>.jsonl``) with paths relative to it, so the tree can be moved as a whole.

    asr librispeech download --parts dev-clean test-clean     # fetch + verify MD5
    asr librispeech extract  --parts dev-clean test-clean
    asr librispeech prepare  --parts dev-clean test-clean     # manifests + summary
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Iterable

from asr.corpora.download import data_dir, download, extract, openslr_url
from asr.corpora.inventory import format_summary, probe_headers, read_trans_txt, summarize
from asr.data.audio import AudioError
from asr.data.manifest import Utterance, write_manifest
from asr.data.tokenizer import CharTokenizer, normalize_text
from asr.errors import CorpusError, UsageError

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
}
# Shorthands for the usual selections, accepted wherever a part name is.
GROUPS = {
    "eval": ("dev-clean", "dev-other", "test-clean", "test-other"),
    "100h": ("train-clean-100",),
    "460h": ("train-clean-100", "train-clean-360"),
    "960h": ("train-clean-100", "train-clean-360", "train-other-500"),
    "all": tuple(PARTS),
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
            openslr_url(RESOURCE, f"{part}.tar.gz", mirror),
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
) -> dict[str, Path]:
    """Write ``<part>.jsonl`` and ``<part>.summary.json`` per part; returns the manifests by part."""
    corpus = Path(root) / "LibriSpeech"
    out_dir = Path(manifest_dir) if manifest_dir else corpus
    manifests = {}
    for part in expand_parts(parts):
        split_dir = corpus / part
        if not split_dir.is_dir():
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asr librispeech", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_ in (
        ("download", "fetch archives and verify their MD5"),
        ("extract", "unpack downloaded archives"),
        ("prepare", "write one manifest per split and print a summary"),
        ("all", "download, extract and prepare"),
    ):
        p = sub.add_parser(name, help=help_)
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
    return parser


def main(argv: list[str] | None = None) -> int:
    """``asr librispeech``; errors go up to :func:`asr.cli.main` (``asr: error: ...``, status 2)."""
    args = build_parser().parse_args(argv)
    root = data_dir(args.data_dir)
    parts = expand_parts(args.parts)
    if args.command in ("download", "all"):
        for part, archive in zip(parts, download_librispeech(root, parts, args.mirror, not args.no_progress)):
            print(f"{part}: {archive}")
    if args.command in ("extract", "all"):
        for part, split_dir in zip(parts, extract_librispeech(root, parts)):
            print(f"{part}: {split_dir}")
    if args.command in ("prepare", "all"):
        manifests = prepare_librispeech(root, parts, args.manifest_dir, args.workers)
        print(format_summary([json.loads(summary_path(m).read_text()) for m in manifests.values()]))
    return 0
