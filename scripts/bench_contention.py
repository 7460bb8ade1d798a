#!/usr/bin/env python3
"""Inference and training speed when another process shares the CPU cores, by OpenMP spin setting.

Why: PyTorch's OpenMP threads spin (busy-wait) before they sleep, 300,000 rounds in libgomp by default. On an
idle machine that is free. When a second process runs its own OpenMP threads on the same cores (another ``asr``
job, a test runner, a notebook), spinning threads burn each other's time slices, and a recurrent network, whose
threads meet at every time step, can slow down by two orders of magnitude. ``import asr`` therefore sets
``GOMP_SPINCOUNT=1000`` unless the user set it (asr/__init__.py). This script measures the effect: for each
setting it runs the model alone, then beside a competitor process (matrix products on as many threads), and
prints audio-seconds per second for inference (no_grad) and for a training step (forward + backward).

The model is freshly initialised from a config (speed does not depend on the weights); the audio is noise.

    python scripts/bench_contention.py --config recipes/synth/conf.yaml --threads 2 --spincounts default,1000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

# Runs in a child process, so that the spin setting is read when its OpenMP runtime starts. torch is imported
# before asr: asr would otherwise put in its own default.
MEASURE = r"""
import json, sys, time, dataclasses
import torch
from asr.training.config import load_config
from asr.model.features import FeatureConfig
from asr.model.network import ASRModel
from asr.data.tokenizer import CharTokenizer
config_path, threads, seconds, batch, repeats = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
torch.manual_seed(0)
config = load_config(config_path, [])
tokenizer = CharTokenizer(config.tokenizer.alphabet)
model = ASRModel(dataclasses.replace(config.model, vocab_size=len(tokenizer)), FeatureConfig(**dataclasses.asdict(config.features)))
audio = torch.randn(batch, int(seconds * 16000)) * 0.05
lengths = torch.full((batch,), audio.shape[1])
out = {}
for name, grad in (("inference", False), ("training", True)):
    model.train(grad)
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        with torch.set_grad_enabled(grad):
            log_probs, _ = model(audio, lengths)
            if grad:
                log_probs.sum().backward()
                model.zero_grad(set_to_none=True)
        rates.append(batch * seconds / (time.perf_counter() - started))
    out[name] = rates
print(json.dumps(out))
"""

COMPETITOR = r"""
import sys, torch
torch.set_num_threads(int(sys.argv[1]))
a = torch.randn(256, 256)
while True:
    a = torch.tanh(a @ a * 0.01)
"""


def measure(args: argparse.Namespace, spincount: str, competitor: bool) -> dict[str, list[float]]:
    env = dict(os.environ)
    env.pop("GOMP_SPINCOUNT", None)
    if spincount != "default":
        env["GOMP_SPINCOUNT"] = spincount
    rival = None
    if competitor:
        rival = subprocess.Popen(
            ["nice", "-n", str(args.competitor_nice), sys.executable, "-c", COMPETITOR, str(args.threads)], env=env
        )
        time.sleep(2.0)  # let it start spinning
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                MEASURE,
                args.config,
                str(args.threads),
                str(args.seconds),
                str(args.batch),
                str(args.repeats),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=args.timeout,
        )
    except subprocess.TimeoutExpired:
        return {"inference": [], "training": [], "timeout": [args.timeout]}
    finally:
        if rival is not None:
            rival.kill()
            rival.wait()
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="recipes/synth/conf.yaml")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--spincounts", default="default,1000", help="comma-separated GOMP_SPINCOUNT values")
    p.add_argument("--seconds", type=float, default=5.0, help="length of each utterance")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per measurement before giving up")
    p.add_argument("--competitor-nice", type=int, default=0, help="niceness of the other process (0-19)")
    args = p.parse_args()
    print(f"# {' '.join(sys.argv)}")
    print(
        f"# torch threads {args.threads}, batch {args.batch} x {args.seconds:g} s of noise, {args.config}, "
        f"other process at nice {args.competitor_nice}; "
        "audio-seconds per second, median of the repeats (first repeat included: it pays the warm-up)"
    )
    print("| GOMP_SPINCOUNT | other process | inference | training |")
    print("|---|---|---|---|")
    for spin in args.spincounts.split(","):
        for competitor in (False, True):
            r = measure(args, spin, competitor)
            cells = [
                f"{sorted(v)[len(v) // 2]:.1f}" if v else f"> {args.timeout:g} s"
                for v in (r["inference"], r["training"])
            ]
            print(f"| {spin} | {'yes' if competitor else 'no'} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
