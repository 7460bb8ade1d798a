"""Audio-seconds per second that ONE DataLoader worker delivers, from loose files and from tar shards.

What a worker does per utterance is all of the CPU side of training: read the file (or the tar member), decode
FLAC/wav, down-mix, resample if the rate differs, encode the transcript and pad the batch; features run on the
model's device in asr, but one row computes them in the worker too, to show what that would cost. The main
process only takes the batches, so the figure is one worker's rate; a GPU training at R audio-s/s then needs
R / rate workers, each on a core of its own.

    python scripts/bench_dataload.py --librispeech /work/data/voice_age/LibriSpeech/train-clean-5 \
        --seconds 40 --json /tmp/dataload.json

The shards are written into --work (default a temporary folder) with `asr shard`'s library code; the files are
read from the page cache after the first pass (on network or object storage the loose-file rows would be slower,
the shard rows much less so). The figures go into docs/benchmarks.md with the machine's load (`uptime`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from asr.corpora.librispeech import read_split
from asr.data.dataset import AudioDataset, collate
from asr.data.manifest import Utterance, read_manifest, write_manifest
from asr.data.sampler import DynamicBucketingSampler
from asr.data.shard_stream import ShardStream, shard_collate
from asr.data.shards import read_shard_manifest, write_shards
from asr.data.tokenizer import CharTokenizer
from asr.model.features import FeatureConfig, LogMel

# H100 training rates this repository measured (docs/benchmarks.md), audio-s/s: the 100 h recipe's fixed
# 1,200-s batches in 16-mixed (run e) and data.max_batch_seconds: auto (largest fit, 16,551-s batches).
H100_RATES = {"default batch (1,200 s, 16-mixed)": 5459.0, "auto batch (16,551 s)": 15678.0}


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)


class FeatureShardStream(ShardStream):
    """The shard stream with log-mel computed in the worker (asr computes it on the device instead)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.logmel = LogMel(FeatureConfig())

    def _batch(self, *args, **kwargs):
        batch = super()._batch(*args, **kwargs)
        if batch["audio"].shape[0]:
            with torch.no_grad():
                batch["feats"] = self.logmel(batch["audio"], batch["audio_lengths"])
        return batch


def measure(loader, sample_rate: int, seconds: float) -> dict:
    """Audio-seconds delivered per wall second over whole passes of the corpus until ``seconds`` have passed,
    timed from the first batch (the first worker start-up excluded; later passes' start-ups, and a shard
    reader's buffer filling, included, as in training)."""
    it = iter(loader)
    first = next(it)
    audio, utts, skipped, passes, t0 = 0.0, 0, len(first["skipped"]), 1, time.perf_counter()
    while True:
        for batch in it:
            audio += float(batch["audio_lengths"].sum()) / sample_rate
            utts += len(batch["indices"])
            skipped += len(batch["skipped"])
            if time.perf_counter() - t0 >= seconds:
                break
        else:
            passes += 1
            it = iter(loader)
            continue
        break
    wall = time.perf_counter() - t0
    del it
    return {
        "audio_seconds": round(audio, 1),
        "utterances": utts,
        "passes": passes,
        "wall_s": round(wall, 2),
        "audio_s_per_s": round(audio / wall, 1),
        "skipped": skipped,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--librispeech", help="an extracted LibriSpeech split (SPEAKER/CHAPTER/*.flac)")
    src.add_argument("--manifest", help="or any manifest of FLAC files (scripts/gpu_dataload_check.sh makes one)")
    p.add_argument("--seconds", type=float, default=40.0, help="wall seconds measured per row")
    p.add_argument("--work", help="folder for the manifest, wav copies and shards (default: a temporary one)")
    p.add_argument("--wav-utterances", type=int, default=400, help="utterances copied to wav for the wav rows")
    p.add_argument("--shard-seconds", type=float, default=600.0)
    p.add_argument(
        "--rows",
        default="loose_flac,shards_flac,loose_wav,shards_wav,shards_flac_resample,shards_flac_features",
        help="comma-separated rows to run",
    )
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()

    work = Path(args.work or tempfile.mkdtemp(prefix="bench_dataload_"))
    work.mkdir(parents=True, exist_ok=True)
    utts = read_split(args.librispeech, workers=2) if args.librispeech else read_manifest(args.manifest)
    tok = CharTokenizer()  # read_split keeps only transcripts in its alphabet
    write_manifest(work / "flac.jsonl", utts)
    wav_utts = []
    (work / "wav").mkdir(exist_ok=True)
    for u in utts[: args.wav_utterances]:
        out = work / "wav" / (Path(u.audio_filepath).stem + ".wav")
        if not out.exists():
            data, sr = sf.read(u.audio_filepath, dtype="int16")
            sf.write(out, data, sr, subtype="PCM_16")
        wav_utts.append(Utterance(str(out), u.duration, u.text))
    write_manifest(work / "wav.jsonl", wav_utts)
    shard_sets = {}
    for name in ("flac", "wav"):
        shard_sets[name] = write_shards(
            work / f"{name}.jsonl", work / f"shards_{name}", args.shard_seconds, overwrite=True
        )

    def loose(items, sr=16000):
        ds = AudioDataset(items, tok, sr)
        sampler = DynamicBucketingSampler(ds.durations, 240.0, shuffle=True, seed=0)
        return DataLoader(
            ds, batch_sampler=sampler, collate_fn=collate, num_workers=1, prefetch_factor=4, worker_init_fn=_one_thread
        )

    def sharded(name, sr=16000, cls=ShardStream):
        s = shard_sets[name]
        ds = cls(s.url_pattern, read_shard_manifest(s.manifest), tok, sr, max_batch_seconds=240.0, num_workers=1)
        return DataLoader(
            ds, batch_size=None, collate_fn=shard_collate, num_workers=1, prefetch_factor=4, worker_init_fn=_one_thread
        )

    rows = {
        "loose_flac": ("loose FLAC files", lambda: loose(utts), 16000),
        "shards_flac": ("FLAC in tar shards", lambda: sharded("flac"), 16000),
        "loose_wav": ("loose wav files (16-bit)", lambda: loose(wav_utts), 16000),
        "shards_wav": ("wav in tar shards", lambda: sharded("wav"), 16000),
        "shards_flac_resample": (
            "FLAC in shards, resampled 16 -> 8 kHz (soxr HQ)",
            lambda: sharded("flac", 8000),
            8000,
        ),
        "shards_flac_features": (
            "FLAC in shards + log-mel in the worker",
            lambda: sharded("flac", cls=FeatureShardStream),
            16000,
        ),
    }
    torch.set_num_threads(1)
    results = []
    for key in args.rows.split(","):
        label, make, sr = rows[key]
        r = {"row": key, "what": label, **measure(make(), sr, args.seconds)}
        results.append(r)
        print(json.dumps(r), flush=True)
    mean = float(np.mean([u.duration for u in utts]))
    summary = {
        "corpus": f"{args.librispeech or args.manifest}: {len(utts)} utterances, {sum(u.duration for u in utts) / 3600:.2f} h, "
        f"mean {mean:.1f} s",
        "machine": f"{platform.node()} {os.cpu_count()} CPUs, load {os.getloadavg()}",
        "torch": torch.__version__,
        "rows": results,
        "cores_per_h100": {
            r["row"]: {k: round(v / r["audio_s_per_s"], 1) for k, v in H100_RATES.items()} for r in results
        },
    }
    print(json.dumps(summary["cores_per_h100"], indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
