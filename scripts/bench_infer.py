#!/usr/bin/env python3
"""Inference speed of an ``asr`` model: real-time factor per batch size, model-load time, and ``asr transcribe``.

Why: a user of a trained model cares about three different costs, and they are easy to confuse. The real-time
factor (RTF: compute seconds per second of audio; below 1 is faster than real time) of the model itself, alone
(batch 1, the latency case) and batched (throughput); the fixed cost of starting a process and loading a model
file (``load_model`` builds the log-mel filterbank with librosa, whose import is a large share of it); and what
``asr transcribe`` costs end to end on real files (process start, loading, decoding audio, batching).

The model is either a trained ``model.pt`` (``--model``) or a freshly initialised one from a config (``--config``
plus ``section.key=value`` overrides); the speed does not depend on the weights. The audio is noise of
``--duration`` seconds: the model's cost depends only on the length. Each timing covers the features, the
encoder and greedy CTC decoding, as ``asr transcribe`` runs them, in inference mode.

Examples::

    python scripts/bench_infer.py --config recipes/librispeech/conf/train_100h.yaml --device cuda --bf16
    python scripts/bench_infer.py --model exp/synth/model.pt --device cpu --batch-sizes 1,8 --synth-files 4
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Sequence

import torch

LOAD_SNIPPET = """
import json, sys, time
t0 = time.perf_counter()
from asr.model.file import load_model
t1 = time.perf_counter()
load_model(sys.argv[1], sys.argv[2])
t2 = time.perf_counter()
load_model(sys.argv[1], sys.argv[2])
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_load_s": t2 - t1, "second_load_s": t3 - t2}))
"""


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (platform.processor() is empty on most Linux systems)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_model(args: argparse.Namespace, device: torch.device) -> tuple[Any, str, str]:
    """(LoadedModel, path of a model file, where it came from); a config's model is saved to a temp file."""
    from asr.model.file import LoadedModel, load_model, save_model

    if args.model:
        return load_model(args.model, device), args.model, args.model
    from asr.data.tokenizer import CharTokenizer
    from asr.model.features import FeatureConfig
    from asr.model.network import ASRModel
    from asr.training.config import load_config

    config = load_config(args.config, args.overrides)
    tokenizer = CharTokenizer(config.tokenizer.alphabet)
    dims = dataclasses.replace(config.model, vocab_size=len(tokenizer))
    torch.manual_seed(args.seed)
    model = ASRModel(dims, FeatureConfig(**dataclasses.asdict(config.features)))
    path = os.path.join(args.workdir, "model.pt")
    save_model(path, model, tokenizer, {"note": "freshly initialised by bench_infer.py"})
    model.to(device).eval()
    return LoadedModel(model, tokenizer, {}), path, f"{args.config} (fresh weights)"


@torch.inference_mode()
def time_rtf(
    loaded: Any, batch_size: int, duration: float, device: torch.device, bf16: bool, min_seconds: float, max_reps: int
) -> dict[str, float]:
    """Seconds per batch of ``batch_size`` utterances of ``duration`` s, and the RTF it gives.

    Two untimed runs first (cuDNN plans, allocator, oneDNN primitives), then as many timed runs as fit in
    ``min_seconds`` (at least 3, at most ``max_reps``).
    """
    from asr.decoding.greedy import greedy_decode

    model, tokenizer = loaded.model, loaded.tokenizer
    n = int(round(duration * model.sample_rate))
    g = torch.Generator().manual_seed(0)
    audio = (0.1 * torch.randn(batch_size, n, generator=g)).to(device)
    lengths = torch.full((batch_size,), n, dtype=torch.long, device=device)

    def once() -> None:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            log_probs, out_lens = model(audio, lengths)
        greedy_decode(log_probs, out_lens, tokenizer)

    for _ in range(2):
        once()
    sync(device)
    reps, start = 0, time.perf_counter()
    while True:
        once()
        sync(device)
        reps += 1
        elapsed = time.perf_counter() - start
        if reps >= max_reps or (reps >= 3 and elapsed >= min_seconds):
            break
    per_batch = elapsed / reps
    rtf = per_batch / (batch_size * duration)
    return {"batch_size": batch_size, "seconds_per_batch": per_batch, "rtf": rtf, "x_realtime": 1.0 / rtf, "reps": reps}


def time_cold_load(path: str, device: str) -> dict[str, float]:
    """Load times in a fresh interpreter, as a user's first ``asr transcribe`` pays them.

    ``process_s`` is the whole subprocess (interpreter + torch import + load); ``first_load_s`` includes
    importing librosa (and CUDA initialisation on a GPU); ``second_load_s`` is a load with all of that done.
    """
    env = dict(os.environ)
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", LOAD_SNIPPET, path, device], capture_output=True, text=True, env=env, check=False
    )
    wall = time.perf_counter() - start
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1], "process_s": wall}
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    return {"process_s": wall, **figures, "file_mb": os.path.getsize(path) / 2**20}


def write_noise_files(folder: str, count: int, duration: float, sample_rate: int) -> list[str]:
    """``count`` WAV files of noise, for timing ``asr transcribe`` where no real audio is at hand."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = os.path.join(folder, f"noise_{i:03d}.wav")
        sf.write(path, (0.1 * rng.standard_normal(int(duration * sample_rate))).astype("float32"), sample_rate)
        paths.append(path)
    return paths


def time_transcribe(model_path: str, files: Sequence[str], device: str) -> dict[str, Any]:
    """Wall time of ``python -m asr transcribe`` on ``files``: everything a user waits for."""
    import soundfile as sf

    audio_s = 0.0
    for f in files:
        try:
            audio_s += sf.info(f).duration
        except RuntimeError:
            pass
    cmd = [sys.executable, "-m", "asr", "transcribe", "--model", model_path, "--device", device, *files]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    result: dict[str, Any] = {
        "files": len(files),
        "audio_s": audio_s,
        "wall_s": wall,
        "returncode": out.returncode,
        "rtf": wall / audio_s if audio_s else None,
    }
    if out.returncode != 0:
        result["error"] = (out.stderr.strip().splitlines() or ["failed"])[-1]
    return result


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("overrides", nargs="*", help="config overrides, section.key=value (with --config)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", help="a model.pt written by asr train")
    src.add_argument("--config", default="recipes/synth/conf.yaml", help="build a fresh model from this config")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-sizes", default="1,8,32", help="comma-separated batch sizes")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of audio per utterance")
    p.add_argument("--bf16", action="store_true", help="also time bf16 autocast (fp32 is always timed)")
    p.add_argument("--min-seconds", type=float, default=1.0, help="time each setting for at least this long")
    p.add_argument("--max-reps", type=int, default=50, help="at most this many timed runs per setting")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all cores)")
    p.add_argument("--no-load-time", action="store_true", help="skip the cold model-load subprocess")
    p.add_argument("--files", nargs="+", help="audio files to time `asr transcribe` on")
    p.add_argument(
        "--synth-files",
        type=int,
        default=0,
        help="write this many noise WAVs of --duration s and time `asr transcribe` on them",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write all figures to this JSON file")
    args = p.parse_args(argv)
    try:
        args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    except ValueError:
        p.error("--batch-sizes must be comma-separated integers, e.g. 1,8,32")
    if not args.batch_sizes or min(args.batch_sizes) < 1:
        p.error("--batch-sizes must be positive")
    return args


def fmt_table(r: dict[str, Any]) -> str:
    lines = [
        f"model      {r['source']}: {r['model']}, {r['parameters'] / 1e6:.1f} M parameters",
        f"device     {r['device']} ({r['device_name']}), torch {r['torch']}, {r['threads']} threads",
        f"audio      {r['duration_s']:g} s per utterance (features + encoder + greedy decoding)",
        "",
        f"{'precision':<10} {'batch':>5} {'ms/batch':>10} {'RTF':>9} {'x realtime':>11}",
    ]
    for row in r["rtf"]:
        lines.append(
            f"{row['precision']:<10} {row['batch_size']:>5} {1e3 * row['seconds_per_batch']:>10.1f} "
            f"{row['rtf']:>9.5f} {row['x_realtime']:>11.1f}"
        )
    load = r.get("load")
    if load:
        lines.append("")
        if "error" in load:
            lines.append(f"model load (cold subprocess) failed: {load['error']}")
        else:
            lines.append(
                f"model load {load['file_mb']:.1f} MiB file, cold process {load['process_s']:.2f} s: "
                f"import asr.model.file {load['import_s']:.2f} s, first load_model "
                f"{load['first_load_s']:.2f} s (incl. librosa import), second {load['second_load_s']:.3f} s"
            )
    tr = r.get("transcribe")
    if tr:
        msg = f"asr transcribe  {tr['files']} files, {tr['audio_s']:.1f} s of audio: {tr['wall_s']:.2f} s wall" + (
            f", end-to-end RTF {tr['rtf']:.4f}" if tr["rtf"] else ""
        )
        lines.append(msg + (f"  FAILED: {tr['error']}" if "error" in tr else ""))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no GPU")
    with tempfile.TemporaryDirectory(prefix="bench_infer_") as workdir:
        args.workdir = workdir
        loaded, model_path, source = build_model(args, device)
        dims, sample_rate = loaded.model.dims, loaded.model.sample_rate
        result: dict[str, Any] = {
            "source": source,
            "device": str(device),
            "threads": torch.get_num_threads(),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
            "torch": torch.__version__,
            "duration_s": args.duration,
            "model": f"{dims.num_layers}x{'Bi' if dims.bidirectional else ''}{dims.cell.upper()}-"
            f"{dims.hidden_size}, subsampling {dims.subsampling}",
            "parameters": sum(p.numel() for p in loaded.model.parameters()),
            "rtf": [],
        }
        for precision in ("fp32", "bf16") if args.bf16 else ("fp32",):
            for b in args.batch_sizes:
                row = time_rtf(loaded, b, args.duration, device, precision == "bf16", args.min_seconds, args.max_reps)
                result["rtf"].append({"precision": precision, **row})
                print(f"  {precision} batch {b}: RTF {row['rtf']:.5f}", file=sys.stderr, flush=True)
        del loaded
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if not args.no_load_time:
            result["load"] = time_cold_load(model_path, str(device))
        files = list(args.files or [])
        if args.synth_files:
            files += write_noise_files(workdir, args.synth_files, args.duration, sample_rate)
        if files:
            result["transcribe"] = time_transcribe(model_path, files, str(device))
    print(fmt_table(result), flush=True)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
