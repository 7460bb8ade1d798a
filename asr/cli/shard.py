"""``asr shard MANIFEST -o DIR --shard-seconds S``: tar shards and shard manifests in NeMo's tarred layout.

The library side is :mod:`asr.data.shards`; this module turns flags into its arguments and says what it wrote.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="asr shard",
        description="Pack a manifest's audio (bytes as they are) into tar shards audio_0.tar, audio_1.tar, ... "
        "with a shard manifest (tarred_audio_manifest.json, audio_filepath = member name, shard_id) and "
        "sharded_manifests/manifest_N.json: NeMo's tarred-dataset layout, read by `asr train --train-shards`.",
        epilog="Train from them with: asr train --train-shards 'DIR/audio_{0..N}.tar' --train-manifest "
        "DIR/tarred_audio_manifest.json ... (see docs/multi_gpu.md)",
    )
    p.add_argument("manifest", help="JSON-lines manifest whose audio files are packed")
    p.add_argument("-o", "--output-dir", required=True, help="folder for the shards and their manifests")
    p.add_argument(
        "--shard-seconds",
        type=float,
        required=True,
        help="seconds of audio per shard (a shard is closed before it would pass this); choose it so that every "
        "DataLoader worker of every GPU gets several shards: at least 4 x GPUs x workers shards in all",
    )
    p.add_argument(
        "--no-shuffle",
        action="store_true",
        help="keep the manifest's order (default: shuffled, seeded, so a speaker-sorted manifest does not give "
        "shards of one speaker)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffle (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="replace shards already in the output folder")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from asr.data.shards import write_shards

    args = build_parser().parse_args(argv)
    result = write_shards(
        args.manifest,
        args.output_dir,
        args.shard_seconds,
        shuffle=not args.no_shuffle,
        seed=args.seed,
        overwrite=args.force,
    )
    log = logging.getLogger("asr")
    for line in result.skipped[:10]:
        print(f"asr: skipped {line}", file=sys.stderr)
    if result.skipped:
        log.warning("%d manifest lines left out (broken lines or missing audio)", len(result.skipped))
    log.info(
        "wrote %d utterances (%.2f h) into %d shards; manifest %s",
        result.utterances,
        result.seconds / 3600,
        len(result.shards),
        result.manifest,
    )
    print(result.url_pattern)
    return 0
