#!/usr/bin/env python3
"""GPU batch sizing check: probe the padded-seconds budget that fits, then measure training throughput at the
config's fixed budget and at the probed one (learning rate scaled by the square-root rule).

Why a script: GPU time is lent in minutes, so the probe and both throughput runs happen in one call and write
their JSON into ``--out`` even when a later part fails.

    python scripts/gpu_batch_sizing.py --config recipes/librispeech/conf/train_100h.yaml --out $OUT
    python scripts/gpu_batch_sizing.py --device cpu --tiny      # dry run: catches typos only (no probe on CPU)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="recipes/librispeech/conf/train_100h.yaml")
    p.add_argument(
        "--longest", type=float, default=24.5, help="longest utterance in seconds (LibriSpeech train-clean-100: 24.5 s)"
    )
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--memory-fraction", type=float, default=0.6)
    p.add_argument("--min-gain", type=float, default=0.0, help="stop doubling below this throughput gain")
    p.add_argument("--device", default="cuda")
    p.add_argument(
        "--also",
        type=float,
        nargs="*",
        default=[4.0],
        help="also measure these multiples of the fixed budget (default: 4x)",
    )
    p.add_argument("--tiny", action="store_true", help="tiny model and 2 steps (local dry run)")
    p.add_argument("--out", default=os.environ.get("OUT", "/tmp/gpu_batch_sizing"))
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    from asr.training.batch_sizing import probe_batch_seconds, scale_lr
    from asr.training.config import load_config
    from asr.training.ctc_module import CTCModule

    tiny = ["model.hidden_size=32", "model.num_layers=1"] if args.tiny else []
    config = load_config(args.config, tiny)
    module = CTCModule.from_config(config)
    slowest = min(config.augment.speed_factors) if config.augment.speed_perturb else 1.0
    longest = args.longest / slowest
    fixed = config.data.max_batch_seconds
    result: dict = {
        "config": args.config,
        "fixed_batch_seconds": fixed,
        "longest_seconds": longest,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    }
    if args.device.startswith("cuda"):
        started = time.perf_counter()
        probe = probe_batch_seconds(
            module.model,
            longest,
            module.model.sample_rate,
            len(module.tokenizer),
            device=args.device,
            memory_fraction=args.memory_fraction,
            min_gain=args.min_gain,
        )
        result.update(
            probe_seconds=round(time.perf_counter() - started, 1),
            auto_batch_seconds=probe.batch_seconds,
            auto_batch_size=probe.batch_size,
            probe_peak_gib=probe.peak_bytes / 2**30,
            total_gib=probe.total_bytes / 2**30,
            tried=probe.tried,
        )
        auto = probe.batch_seconds
    else:
        auto = fixed * 2  # dry run
    lr = scale_lr(config.optim.lr, auto, fixed)
    result["auto_lr"] = lr
    print(json.dumps(result, indent=1), flush=True)
    with open(os.path.join(args.out, "probe.json"), "w") as f:
        json.dump(result, f, indent=1)
    del module
    torch.cuda.empty_cache() if torch.cuda.is_available() else None

    steps = (
        ["--steps", "2", "--warmup", "1"] if args.tiny else ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    )
    runs = [("fixed", fixed, []), ("auto", auto, [f"optim.lr={lr}"])]
    runs += [(f"x{k}", fixed * k, [f"optim.lr={scale_lr(config.optim.lr, fixed * k, fixed)}"]) for k in args.also]
    for label, seconds, extra in runs:
        cmd = [
            sys.executable,
            "scripts/bench_train.py",
            "--config",
            args.config,
            "--durations",
            "librispeech",
            "--device",
            args.device,
            "--precision",
            "16" if args.device.startswith("cuda") else "32",
            "--no-peak",
            "--label",
            label,
            "--json",
            os.path.join(args.out, f"train_{label}.json"),
            *steps,
            f"data.max_batch_seconds={seconds}",
            *extra,
            *tiny,
        ]
        if args.tiny:
            cmd += ["--num-utterances", "200", "--threads", "2"]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=False)
    print("\nrun    batch-s  audio-s/s  peak MiB")
    for label, seconds, _ in runs:
        try:
            with open(os.path.join(args.out, f"train_{label}.json")) as f:
                r = json.load(f)
            print(f"{label:6s} {seconds:8.0f} {r['audio_s_per_s']:10.0f} {r['peak_memory_mb']:9.0f}")
        except (OSError, KeyError, ValueError):
            print(f"{label:6s} {seconds:8.0f}  failed (see the log above)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
