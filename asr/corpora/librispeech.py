"""LibriSpeech (OpenSLR resource 12): download, unpack and turn each split into a manifest.

Each part is one archive whose members all start with ``LibriSpeech/<split>/``, so every part unpacks into the
same ``<data-dir>/LibriSpeech`` tree. A split's manifest is written beside its folder
(``<data-dir>/LibriSpeech/<split>.jsonl``) with paths relative to it, so the tree can be moved as a whole.

    python -m asr.corpora.librispeech download --parts dev-clean test-clean     # fetch + verify MD5
    python -m asr.corpora.librispeech extract  --parts dev-clean test-clean
    python -m asr.corpora.librispeech prepare  --parts dev-clean test-clean     # manifests + summary
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

from asr.audio import AudioError, audio_info
from asr.corpora.download import data_dir, download, extract, openslr_url
from asr.manifest import Utterance, write_manifest
from asr.tokenizer import CharTokenizer, normalize_text

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


def expand_parts(names: Iterable[str]) -> list[str]:
    """Resolve part names and group shorthands to an ordered list of distinct parts."""
    out: list[str] = []
    for name in names:
        if name not in PARTS and name not in GROUPS:
            raise ValueError(f"unknown LibriSpeech part {name!r}; choose from {', '.join([*PARTS, *GROUPS])}")
        for part in GROUPS.get(name, (name,)):
            if part not in out:
                out.append(part)
    return out


def archive_path(part: str, root: str | os.PathLike) -> Path:
    return Path(root) / "downloads" / f"{part}.tar.gz"


def download_part(part: str, root: str | os.PathLike, mirror: str | None = None, progress: bool = True) -> Path:
    """Fetch one part's archive into ``<root>/downloads`` and verify its published MD5."""
    return download(openslr_url(RESOURCE, f"{part}.tar.gz", mirror), archive_path(part, root), md5=PARTS[part],
                    progress=progress)


def extract_part(part: str, root: str | os.PathLike) -> Path:
    """Unpack a downloaded part; returns the split folder ``<root>/LibriSpeech/<part>``."""
    archive = archive_path(part, root)
    if not archive.is_file():
        raise FileNotFoundError(f"{archive}: not downloaded yet (run the download step first)")
    extract(archive, root)
    split_dir = Path(root) / "LibriSpeech" / part
    if not split_dir.is_dir():
        raise FileNotFoundError(f"{archive}: unpacked, but {split_dir} is missing; is it a LibriSpeech archive?")
    return split_dir


def read_split(split_dir: str | os.PathLike, workers: int = 16,
               problems: list[str] | None = None) -> list[Utterance]:
    """Utterances of one split folder (``<spk>/<chapter>/<spk>-<chapter>.trans.txt`` + ``.flac``), sorted by id.

    Durations come from the audio headers, read in parallel because a training split has ~100k files.
    An utterance whose audio is missing or unreadable, or whose text has characters outside the default
    alphabet, is left out and described in ``problems`` rather than failing the whole split.
    """
    split_dir = Path(split_dir)
    problems = problems if problems is not None else []
    tokenizer = CharTokenizer()
    entries: list[tuple[str, Path, str, str, str]] = []
    for trans in sorted(split_dir.glob("*/*/*.trans.txt")):
        speaker, chapter = trans.parent.parent.name, trans.parent.name
        for lineno, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            utt_id, _, text = line.strip().partition(" ")
            text = normalize_text(text)
            oov = tokenizer.oov_chars(text)
            if oov:
                problems.append(f"{trans}:{lineno}: {utt_id}: characters outside the alphabet {oov}")
                continue
            entries.append((utt_id, trans.parent / f"{utt_id}.flac", text, speaker, chapter))

    def probe(entry: tuple[str, Path, str, str, str]) -> Utterance | str:
        utt_id, path, text, speaker, chapter = entry
        try:
            info = audio_info(path)
        except AudioError as e:
            return str(e)
        if info.duration <= 0:
            return f"{path}: no audio samples"
        extra = {"id": utt_id, "speaker": speaker, "chapter": chapter}
        return Utterance(str(path), round(info.duration, 4), text, extra)

    utterances: list[Utterance] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for result in pool.map(probe, entries, chunksize=64):
            if isinstance(result, str):
                problems.append(result)
            else:
                utterances.append(result)
    utterances.sort(key=lambda u: u.extra["id"])
    return utterances


def summarize(utterances: list[Utterance]) -> dict:
    """Counts that tell at a glance whether a split was prepared completely (compare with the published ones)."""
    longest = max(utterances, key=lambda u: u.duration, default=None)
    return {
        "utterances": len(utterances),
        "hours": round(sum(u.duration for u in utterances) / 3600, 3),
        "speakers": len({u.extra.get("speaker") for u in utterances}),
        "longest": {"id": longest.extra.get("id"), "seconds": longest.duration} if longest else None,
    }


def prepare_split(part: str, root: str | os.PathLike, manifest_dir: str | os.PathLike | None = None,
                  workers: int = 16) -> dict:
    """Write ``<part>.jsonl`` and ``<part>.summary.json``; returns the summary (with any problems listed)."""
    corpus = Path(root) / "LibriSpeech"
    split_dir = corpus / part
    if not split_dir.is_dir():
        raise FileNotFoundError(f"{split_dir}: not found (run the download and extract steps first)")
    out_dir = Path(manifest_dir) if manifest_dir else corpus
    problems: list[str] = []
    utterances = read_split(split_dir, workers=workers, problems=problems)
    if not utterances:
        raise ValueError(f"{split_dir}: no usable utterances found")
    manifest = out_dir / f"{part}.jsonl"
    write_manifest(manifest, utterances)
    summary = {"split": part, "manifest": str(manifest), **summarize(utterances), "problems": problems}
    (out_dir / f"{part}.summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def format_summary(summaries: list[dict]) -> str:
    rows = [f"{'split':<16} {'utterances':>10} {'hours':>8} {'speakers':>8}  longest"]
    for s in summaries:
        longest = f"{s['longest']['id']} ({s['longest']['seconds']:.1f} s)" if s["longest"] else "-"
        rows.append(f"{s['split']:<16} {s['utterances']:>10} {s['hours']:>8.2f} {s['speakers']:>8}  {longest}")
        if s["problems"]:
            rows.append(f"  {len(s['problems'])} utterance(s) left out, e.g. {s['problems'][0]}")
    return "\n".join(rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr librispeech", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_ in (("download", "fetch archives and verify their MD5"),
                        ("extract", "unpack downloaded archives"),
                        ("prepare", "write one manifest per split and print a summary"),
                        ("all", "download, extract and prepare")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--parts", nargs="+", default=["eval", "100h"],
                       help=f"parts or groups ({', '.join(GROUPS)}); default: eval 100h")
        p.add_argument("--data-dir", help="where corpora live (default: $ASR_DATA_DIR or ./data)")
        p.add_argument("--mirror", help="OpenSLR base URL (default: $ASR_OPENSLR_MIRROR or www.openslr.org)")
        p.add_argument("--manifest-dir", help="where manifests go (default: <data-dir>/LibriSpeech)")
        p.add_argument("--workers", type=int, default=16, help="parallel header reads (default 16)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        parts = expand_parts(args.parts)
        root = data_dir(args.data_dir)
        if args.command in ("download", "all"):
            for part in parts:
                print(f"{part}: {download_part(part, root, args.mirror, progress=not args.no_progress)}")
        if args.command in ("extract", "all"):
            for part in parts:
                print(f"{part}: {extract_part(part, root)}")
        if args.command in ("prepare", "all"):
            summaries = [prepare_split(p, root, args.manifest_dir, args.workers) for p in parts]
            print(format_summary(summaries))
    except (OSError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
