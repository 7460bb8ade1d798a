#!/usr/bin/env python3
"""Long recordings: WER of one long file against the same utterances one by one, real-time factor, peak memory.

Why: `asr transcribe` cuts a long file at pauses and stitches the pieces; that must not cost accuracy, and memory
must not grow with the file. This script builds test material from held-out utterances (a manifest): they are
concatenated with pauses of random length into a file of ``--minutes``, with white noise at ``--snr`` dB (or
clean); the one-by-one reference is the same utterances as files of their own, carrying the same noise
samples as in the long file (only the pauses are new in the long file). Both go through ``python -m asr
transcribe`` in a child process (timed, with its peak RSS from ``/usr/bin/time``): the short files with ``--vad
none`` (each in one piece, as before long-form support), the long file with each ``--vad`` under test. WER is
scored over the whole text in both cases.

``--flite-voices`` first synthesises the manifest's texts with Debian's flite voices (``apt-get install flite``),
a source the model has never heard, into a manifest of their own that is benchmarked the same way.

Examples::

    python scripts/bench_longform.py --model exp/synth/model.pt --manifest data/synth/test.jsonl \\
        --minutes 10 --snr clean 20 10 5 --vad silero webrtc energy --work /tmp/lf
    python scripts/bench_longform.py --model exp/synth/model.pt --manifest data/synth/test.jsonl --minutes 60 \\
        --vad silero --work /tmp/lf
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from typing import Any

import numpy as np
import soundfile as sf

from asr.data.manifest import read_manifest
from asr.data.tokenizer import normalize_text
from asr.evaluation.metrics import word_errors

RATE = 16000


def synth_flite(texts: list[str], voices: list[str], out_dir: str) -> str:
    """One flite utterance per (text, voice), round robin over voices; returns the manifest's path."""
    if shutil.which("flite") is None:
        raise SystemExit("flite is not installed (apt-get install flite)")
    os.makedirs(out_dir, exist_ok=True)
    manifest = os.path.join(out_dir, "flite.jsonl")
    with open(manifest, "w") as m:
        for i, text in enumerate(texts):
            voice = voices[i % len(voices)]
            path = os.path.join(out_dir, f"flite-{i:05d}.wav")
            if not os.path.exists(path):
                subprocess.run(["flite", "-voice", voice, "-t", text, "-o", path], check=True)
            m.write(
                json.dumps(
                    {
                        "audio_filepath": path,
                        "duration": sf.info(path).duration,
                        "text": text,
                        "speaker": f"flite-{voice}",
                    }
                )
                + "\n"
            )
    return manifest


def build_material(
    utts: list[Any], minutes: float, snr: float | None, out_dir: str, seed: int, pause: tuple[float, float]
) -> dict[str, Any]:
    """Write ``long.wav`` (utterances with pauses between) and ``pieces/*.wav`` (the same utterances alone).

    With ``snr``, white noise runs through the whole long file, and each piece carries exactly the noise that
    lies on its utterance in the long file: the speech samples are identical, only the pauses are new.
    """
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    os.makedirs(os.path.join(out_dir, "pieces"), exist_ok=True)
    audios: dict[str, np.ndarray] = {}

    def audio(path: str) -> np.ndarray:
        if path not in audios:
            x, sr = sf.read(path, dtype="float32", always_2d=True)
            x = x.mean(axis=1)
            if sr != RATE:
                import soxr

                x = soxr.resample(x, sr, RATE).astype(np.float32)
            audios[path] = x
        return audios[path]

    power = float(np.mean([np.mean(audio(u.audio_filepath) ** 2) for u in utts[:50]]))
    noise_std = 0.0 if snr is None else float(np.sqrt(power / 10 ** (snr / 10)))

    def noisy(x: np.ndarray) -> np.ndarray:
        if noise_std:
            x = x + nrng.normal(0, noise_std, x.shape[0]).astype(np.float32)
        return np.clip(x, -1, 1)

    total, refs, pieces, k = 0, [], [], 0
    with sf.SoundFile(os.path.join(out_dir, "long.wav"), "w", RATE, 1, subtype="PCM_16") as long_file:
        while total < minutes * 60 * RATE:
            gap = noisy(np.zeros(int(rng.uniform(*pause) * RATE), np.float32))
            u = utts[k % len(utts)]
            k += 1
            x = noisy(audio(u.audio_filepath))
            path = os.path.join(out_dir, "pieces", f"{len(pieces):05d}.wav")
            sf.write(path, x, RATE, subtype="PCM_16")
            long_file.write(gap)
            long_file.write(x)
            pieces.append(path)
            refs.append(normalize_text(u.text))
            total += gap.shape[0] + x.shape[0]
        gap = noisy(np.zeros(int(rng.uniform(*pause) * RATE), np.float32))
        long_file.write(gap)
        total += gap.shape[0]
    with open(os.path.join(out_dir, "pieces.txt"), "w") as f:
        f.write("\n".join(pieces) + "\n")
    return {
        "long": os.path.join(out_dir, "long.wav"),
        "pieces": os.path.join(out_dir, "pieces.txt"),
        "refs": refs,
        "seconds": total / RATE,
        "utterances": len(refs),
    }


def run_transcribe(model: str, inputs: list[str], extra: list[str]) -> dict[str, Any]:
    """``python -m asr transcribe --format json`` in a child: its JSON lines, wall time and peak RSS."""
    cmd = [
        "/usr/bin/time",
        "-f",
        "MAXRSS_KB %M CPU_S %U %S",
        sys.executable,
        "-m",
        "asr",
        "-q",
        "transcribe",
        "--model",
        model,
        "--device",
        "cpu",
        "--format",
        "json",
        "--no-progress",
        *extra,
        *inputs,
    ]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"transcribe failed ({p.returncode}): {p.stderr[-2000:]}")
    stats = [ln.split() for ln in p.stderr.splitlines() if ln.startswith("MAXRSS_KB")][-1]
    return {
        "results": [json.loads(ln) for ln in p.stdout.splitlines() if ln.strip()],
        "wall_s": wall,
        "cpu_s": float(stats[3]) + float(stats[4]),
        "peak_rss_mb": int(stats[1]) / 1024,
    }


def wer(refs: list[str], hyp: str) -> float:
    e = word_errors(" ".join(refs), hyp)
    return e.total / max(1, e.reference_length)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--manifest", required=True, help="held-out utterances (JSON lines manifest)")
    p.add_argument("--flite-voices", nargs="*", default=[], help="also bench these flite voices (kal16 awb rms slt)")
    p.add_argument("--flite-count", type=int, default=120, help="utterances synthesised with flite")
    p.add_argument("--minutes", type=float, nargs="+", default=[10.0])
    p.add_argument("--snr", nargs="+", default=["clean"], help="'clean' or dB of white noise against speech power")
    p.add_argument("--vad", nargs="+", default=["silero"])
    p.add_argument("--pause", type=float, nargs=2, default=(0.3, 1.5), help="pause between utterances, min max (s)")
    p.add_argument("--max-segment-seconds", type=float, default=20.0)
    p.add_argument("--skip-one-by-one", action="store_true", help="only the long file (e.g. for memory alone)")
    p.add_argument("--work", required=True, help="scratch directory for the generated audio")
    p.add_argument("--json", help="write all results here")
    args = p.parse_args()

    sources = {"espeak": read_manifest(args.manifest)}
    if args.flite_voices:
        texts = [u.text for u in sources["espeak"][: args.flite_count]]
        flite = synth_flite(texts, args.flite_voices, os.path.join(args.work, "flite"))
        sources["flite"] = read_manifest(flite)
    rows = []
    for source, utts in sources.items():
        for minutes in args.minutes:
            for snr in args.snr:
                snr_db = None if snr == "clean" else float(snr)
                out = os.path.join(args.work, f"{source}-{minutes:g}min-{snr}")
                m = build_material(utts, minutes, snr_db, out, seed=0, pause=tuple(args.pause))
                base = {
                    "source": source,
                    "minutes": minutes,
                    "snr": snr,
                    "audio_s": round(m["seconds"], 1),
                    "utterances": m["utterances"],
                }
                if not args.skip_one_by_one:
                    r = run_transcribe(args.model, ["--input-list", m["pieces"]], ["--vad", "none"])
                    hyp = " ".join(x["text"] for x in r["results"])
                    rows.append(
                        {
                            **base,
                            "mode": "one-by-one",
                            "wer": wer(m["refs"], hyp),
                            "wall_s": r["wall_s"],
                            "cpu_s": r["cpu_s"],
                            "rtf": r["wall_s"] / m["seconds"],
                            "peak_rss_mb": r["peak_rss_mb"],
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
                for vad in args.vad:
                    r = run_transcribe(
                        args.model, [m["long"]], ["--vad", vad, "--max-segment-seconds", str(args.max_segment_seconds)]
                    )
                    res = r["results"][0]
                    rows.append(
                        {
                            **base,
                            "mode": f"long/{vad}",
                            "wer": wer(m["refs"], res["text"]),
                            "wall_s": r["wall_s"],
                            "cpu_s": r["cpu_s"],
                            "rtf": r["wall_s"] / m["seconds"],
                            "peak_rss_mb": r["peak_rss_mb"],
                            "segments": len(res["segments"]),
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
    # On a shared machine wall time includes waiting for the CPU; CPU seconds (user + system) per audio second
    # is the cost that does not depend on the neighbours.
    print("\n| source | minutes | SNR | mode | WER % | wall s | wall RTF | CPU s | CPU s per audio s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['source']} | {r['minutes']:g} | {r['snr']} | {r['mode']} | {100 * r['wer']:.2f} | "
            f"{r['wall_s']:.1f} | {r['rtf']:.3f} | {r['cpu_s']:.1f} | {r['cpu_s'] / r['audio_s']:.3f} | "
            f"{r['peak_rss_mb']:.0f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
