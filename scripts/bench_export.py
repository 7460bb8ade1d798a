#!/usr/bin/env python3
"""Exported models against the PyTorch model: parity, WER of int8, and speed at batch 1.

Why: an export is only worth shipping if it says the same thing as the model it came from, and int8 only if
it is faster for a WER cost that is known. This script exports ``--model`` to ONNX (fp32 and int8, through
:mod:`asr.model.export`), quantises a copy in PyTorch as well, and runs four engines on the utterances of
``--manifest``, one utterance at a time (batch 1, the latency case):

* parity of onnxruntime fp32 with PyTorch fp32: the largest absolute log-prob difference within each
  utterance's frames, and how many greedy transcripts are identical; the same again on padded batches of
  ``--parity-batch`` consecutive utterances (mixed lengths), where the padding-proof layers must hold;
* WER of each engine (greedy decoding), so the int8 cost is measured on the same utterances;
* real-time factor (seconds per audio second; features + encoder + greedy decoding) on the first
  ``--timing-utterances`` utterances, ``--repeats`` times, the engines taking turns on every utterance in a
  rotating order, so a load spike from other jobs on a shared CPU hits every engine alike. Three figures, as
  a shared CPU blurs any one of them: the median wall time over repetitions, the "best" time (each
  utterance's fastest repetition, summed: what the engine does when it gets the cores), and the process
  CPU time (threads that wait sleep, so it counts work, not waiting).

Example::

    python scripts/bench_export.py --model exp/synth/model.pt --manifest data/synth/test.jsonl \\
        --out-dir exp/synth/export --repeats 5 --json exp/synth/export/bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable

# Before torch loads OpenMP: waiting threads sleep instead of spinning. On a CPU shared with other jobs a
# spinning OpenMP barrier waits for a descheduled peer, and PyTorch's batch-1 LSTM became 10-100x slower and
# erratic here (onnxruntime's threads are told not to spin either, see asr.model.export.OnnxModel).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

Engine = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def torch_engine(model: torch.nn.Module) -> Engine:
    @torch.inference_mode()
    def run(audio: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        log_probs, out_lengths = model(torch.from_numpy(audio), torch.from_numpy(lengths))
        return log_probs.numpy(), out_lengths.numpy()

    return run


def pad(audios: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([a.shape[0] for a in audios], dtype=np.int64)
    batch = np.zeros((len(audios), int(lengths.max())), dtype=np.float32)
    for row, a in enumerate(audios):
        batch[row, : a.shape[0]] = a
    return batch, lengths


def decode(log_probs: np.ndarray, lengths: np.ndarray, tokenizer) -> list[str]:
    from asr.decoding.greedy import greedy_decode

    return greedy_decode(torch.from_numpy(log_probs), torch.from_numpy(lengths), tokenizer)


def max_diff(a: np.ndarray, b: np.ndarray, lengths: np.ndarray) -> float:
    return max(float(np.abs(a[i, :n] - b[i, :n]).max()) for i, n in enumerate(lengths))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--out-dir", required=True, help="the ONNX files are written here")
    p.add_argument("--limit", type=int, help="only the first N utterances (default: all)")
    p.add_argument("--timing-utterances", type=int, default=60)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--parity-batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()

    from asr.data.audio import load_audio
    from asr.data.manifest import read_manifest
    from asr.data.tokenizer import normalize_text
    from asr.evaluation.metrics import ErrorRates
    from asr.model.export import OnnxModel, export_onnx, quantize_torch
    from asr.model.file import load_model

    torch.set_num_threads(args.threads)
    os.makedirs(args.out_dir, exist_ok=True)
    loaded = load_model(args.model, "cpu")
    fp32_path = export_onnx(loaded, os.path.join(args.out_dir, "model.onnx"))[0]
    int8_path = export_onnx(loaded, os.path.join(args.out_dir, "model.int8.onnx"), int8=True)[0]
    engines: dict[str, Engine] = {
        "torch fp32": torch_engine(loaded.model),
        "torch int8 (quantize_dynamic)": torch_engine(quantize_torch(loaded.model)),
        "onnxruntime fp32": OnnxModel(fp32_path, args.threads),
        "onnxruntime int8 (quantize_dynamic)": OnnxModel(int8_path, args.threads),
    }
    utts = read_manifest(args.manifest)[: args.limit]
    sr = loaded.model.sample_rate
    audios = [load_audio(u.audio_filepath, sr).astype(np.float32) for u in utts]
    refs = [normalize_text(u.text) for u in utts]
    seconds = sum(a.shape[0] for a in audios) / sr
    print(f"{len(utts)} utterances, {seconds:.1f} s of audio; {args.threads} threads", flush=True)

    results: dict[str, dict] = {}
    outputs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for name, engine in engines.items():
        outs = [engine(*pad([a])) for a in audios]
        texts = [decode(lp, n, loaded.tokenizer)[0] for lp, n in outs]
        rates = ErrorRates()
        for ref, hyp in zip(refs, texts):
            rates.add(ref, hyp)
        outputs[name] = outs
        results[name] = {"wer": rates.wer, "cer": rates.cer, "texts": texts}
        print(f"{name:38s} WER {100 * rates.wer:6.2f} %  CER {100 * rates.cer:6.2f} %", flush=True)

    reference = "torch fp32"
    parity = {}
    for name in engines:
        if name == reference:
            continue
        diff = max(max_diff(o[0], r[0], r[1]) for o, r in zip(outputs[name], outputs[reference]))
        same_len = all(np.array_equal(o[1], r[1]) for o, r in zip(outputs[name], outputs[reference]))
        agree = sum(a == b for a, b in zip(results[name]["texts"], results[reference]["texts"]))
        parity[name] = {"max_abs_log_prob_diff": diff, "same_lengths": same_len, "identical_transcripts": agree}
        print(
            f"{name:38s} vs torch fp32, batch 1: max |dlogp| {diff:.2e}, lengths equal {same_len}, "
            f"transcripts identical {agree}/{len(utts)}",
            flush=True,
        )
    # Padded batches: ONNX fp32 against torch fp32 on the same padded input.
    diffs, agree = [], 0
    for start in range(0, len(audios), args.parity_batch):
        batch, lengths = pad(audios[start : start + args.parity_batch])
        (lp_o, n_o), (lp_t, n_t) = engines["onnxruntime fp32"](batch, lengths), engines[reference](batch, lengths)
        assert np.array_equal(n_o, n_t)
        diffs.append(max_diff(lp_o, lp_t, n_t))
        agree += sum(a == b for a, b in zip(decode(lp_o, n_o, loaded.tokenizer), decode(lp_t, n_t, loaded.tokenizer)))
    parity["onnxruntime fp32, padded batches"] = {
        "batch": args.parity_batch,
        "max_abs_log_prob_diff": max(diffs),
        "identical_transcripts": agree,
    }
    print(
        f"onnxruntime fp32 vs torch fp32, padded batches of {args.parity_batch}: max |dlogp| {max(diffs):.2e}, "
        f"transcripts identical {agree}/{len(utts)}",
        flush=True,
    )

    timed = audios[: args.timing_utterances]
    timed_seconds = sum(a.shape[0] for a in timed) / sr
    names = list(engines)
    # wall[name][rep][utt] and cpu[name][rep][utt]: seconds. The engines take turns on every utterance, in an
    # order that rotates, so a burst of load from other jobs lands on all of them alike.
    wall = {name: [[0.0] * len(timed) for _ in range(args.repeats)] for name in names}
    cpu = {name: [[0.0] * len(timed) for _ in range(args.repeats)] for name in names}
    for rep in range(args.repeats):
        for j, a in enumerate(timed):
            shift = (rep + j) % len(names)
            for name in names[shift:] + names[:shift]:
                c0, t0 = time.process_time(), time.perf_counter()
                lp, n = engines[name](*pad([a]))
                decode(lp, n, loaded.tokenizer)
                wall[name][rep][j], cpu[name][rep][j] = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"\nbatch 1, {len(timed)} utterances ({timed_seconds:.1f} s), {args.repeats} repetitions, engines "
        "interleaved per utterance. RTF = seconds per audio second: wall median over repetitions (min-max); "
        "best = each utterance's fastest repetition, summed; CPU = process CPU time, median"
    )
    figures = {}
    for name in names:
        totals = [sum(r) / timed_seconds for r in wall[name]]
        best = sum(min(r[j] for r in wall[name]) for j in range(len(timed))) / timed_seconds
        cpu_rtf = statistics.median(sum(r) / timed_seconds for r in cpu[name])
        figures[name] = (statistics.median(totals), best, cpu_rtf)
        results[name].update(rtf_wall_median=figures[name][0], rtf_wall_reps=totals, rtf_best=best, rtf_cpu=cpu_rtf)
    base = figures[reference]
    for name in names:
        f = figures[name]
        totals = results[name]["rtf_wall_reps"]
        print(
            f"{name:38s} wall {f[0]:.4f} ({min(totals):.4f}-{max(totals):.4f}) x{base[0] / f[0]:.2f} | "
            f"best {f[1]:.4f} x{base[1] / f[1]:.2f} | CPU {f[2]:.4f} x{base[2] / f[2]:.2f}"
        )
    print(
        f"\nfiles: {fp32_path} ({os.path.getsize(fp32_path) / 1e6:.1f} MB), "
        f"{int8_path} ({os.path.getsize(int8_path) / 1e6:.1f} MB); model {os.path.getsize(args.model) / 1e6:.1f} MB"
    )
    print(f"command: python {' '.join(sys.argv)}")
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
        f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, load average {os.getloadavg()[0]:.1f} at the end"
    )
    if args.json:
        for r in results.values():
            r.pop("texts")
        with open(args.json, "w") as f:
            json.dump(
                {
                    "utterances": len(utts),
                    "audio_seconds": seconds,
                    "engines": results,
                    "parity": parity,
                    "threads": args.threads,
                    "argv": sys.argv,
                },
                f,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
