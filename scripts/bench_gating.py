"""What the voice detector's gating of short files does to clips padded with silence or noise (docs/transcription.md).

Two measurements:

``--manifest`` (with ``--model``): each utterance as it is, with 1.5 s of digital silence on each side, and with
1.5 s on each side plus white noise over the whole file at a level relative to the utterance's RMS. Transcribed
the way a short file went before (whole, ``--vad none``) and now (``--vad energy``: trimmed, or dropped when
there is no speech). Prints WER per variant, words put into noise-only files (2 s of silence, 5 s of white, pink
and brown noise at three levels), and, where the manifest has eSpeak's word times (``words``), the error of the
first word's start.

``--librispeech DIR`` (no model needed): the detector alone on real read speech (FLAC + ``*.trans.txt``): how much
of each clean utterance it trims, and where it puts the window of the padded variants against the clean
utterance's own window.

    python scripts/bench_gating.py --model exp/synth/model.pt --manifest data/synth/test.jsonl --limit 200
    python scripts/bench_gating.py --librispeech LibriSpeech/train-clean-5 --limit 300
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SR = 16000
PAD_S = 1.5
NOISE_DB = (-40.0, -30.0, -20.0)


def variants(audio: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    pad = np.zeros(int(PAD_S * SR), np.float32)
    padded = np.concatenate([pad, audio, pad])
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    out = {"clean": audio, "silence 1.5 s": padded}
    for db in NOISE_DB:
        noise = rms * 10 ** (db / 20) * rng.standard_normal(len(padded))
        out[f"noise {db:.0f} dB"] = (padded + noise).astype(np.float32)
    return out


def coloured(beta: float, n: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    x = np.fft.irfft(spectrum * f ** (-beta / 2), n=n)
    return (x / x.std()).astype(np.float32)


def model_bench(args: argparse.Namespace) -> None:
    from asr.data.manifest import read_manifest
    from asr.data.tokenizer import normalize_text
    from asr.evaluation.metrics import ErrorRates
    from asr.inference.transcribe import Transcriber
    from asr.model.file import load_model

    loaded = load_model(args.model)
    utts = read_manifest(args.manifest)[: args.limit]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    files: dict[str, list[str]] = {}
    for i, u in enumerate(utts):
        audio, sr = sf.read(u.audio_filepath, dtype="float32")
        assert sr == SR, u.audio_filepath
        for name, x in variants(audio, rng).items():
            path = work / f"{i:04d}-{name.replace(' ', '_')}.wav"
            sf.write(path, x, SR)
            files.setdefault(name, []).append(str(path))
    empties = {"silence 2 s": np.zeros(2 * SR, np.float32)}
    for level in (0.001, 0.01, 0.1):
        for beta, colour in ((0, "white"), (1, "pink"), (2, "brown")):
            empties[f"{colour} noise 5 s, rms {level}"] = level * coloured(beta, 5 * SR, rng)
    empty_files = []
    for k, (name, x) in enumerate(empties.items()):
        path = work / f"empty-{k}.wav"
        sf.write(path, x, SR)
        empty_files.append(str(path))
    refs = [normalize_text(u.text) for u in utts]
    for vad, label in (("none", "before (short file whole)"), ("energy", "now (gated, trimmed)")):
        tr = Transcriber(loaded, vad=vad, word_timestamps=True)
        t0 = time.process_time()
        print(f"\n## {label}: --vad {vad}")
        for name, paths in files.items():
            results = list(tr.run(paths))
            rates = ErrorRates()
            for ref, r in zip(refs, results):
                rates.add(ref, r.text or "")
            line = f"{name:>16}: WER {100 * rates.wer:6.2f} %  ({len(refs)} utterances)"
            starts = []
            shift = 0.0 if name == "clean" else PAD_S
            for u, r in zip(utts, results):
                truth = u.extra.get("words")
                if truth and r.segments and r.segments[0].words:
                    starts.append(r.segments[0].words[0].start - (truth[0]["start"] + shift))
            if starts:
                e = np.abs(np.array(starts)) * 1000
                line += f"  first-word start error: mean {e.mean():.0f} ms, median {np.median(e):.0f} ms"
            print(line, flush=True)
        for name, r in zip(empties, tr.run(empty_files)):
            print(f"{name:>30}: {len((r.text or '').split())} words  {r.text[:60]!r}")
        print(f"(CPU {time.process_time() - t0:.1f} s)")


def librispeech_bench(args: argparse.Namespace) -> None:
    from asr.data.audio import load_audio
    from asr.inference.segmentation import EnergyVAD, SegmentationConfig, plan_windows
    from asr.model.features import FeatureConfig, LogMel

    fc = FeatureConfig()
    vad = EnergyVAD(LogMel(fc).mel_fb.numpy(), fc.n_fft, fc.win_length, fc.hop_length, SR)
    cfg = SegmentationConfig()
    root = Path(args.librispeech)
    flacs = sorted(root.rglob("*.flac"))
    rng = np.random.default_rng(0)
    pick = sorted(rng.choice(len(flacs), size=min(args.limit, len(flacs)), replace=False))
    trimmed_lead, trimmed_tail, n_trimmed, n_empty = [], [], 0, 0
    diffs: dict[str, list[tuple[float, float]]] = {}
    kept_pad: dict[str, list[float]] = {}
    durations = []
    for k in pick:
        audio = load_audio(flacs[k], SR)
        durations.append(len(audio) / SR)
        for name, x in variants(audio, rng).items():
            probs = vad.speech_probabilities([x])
            wins = plan_windows(probs, vad.frame_seconds, len(x), SR, cfg, grid=480)
            if not wins:
                if name == "clean":
                    n_empty += 1
                continue
            start, end = wins[0].start / SR, wins[-1].end / SR
            if name == "clean":
                ref = (start, end)
                if (start, end) != (0.0, len(x) / SR):
                    n_trimmed += 1
                trimmed_lead.append(start)
                trimmed_tail.append(len(x) / SR - end)
                continue
            a, b = start - PAD_S, end - PAD_S  # in the clean utterance's time
            diffs.setdefault(name, []).append((a - ref[0], b - ref[1]))
            kept_pad[name] = kept_pad.get(name, []) + [max(0.0, -a) + max(0.0, b - len(audio) / SR)]
    n = len(pick)
    print(f"{n} LibriSpeech utterances from {root} (mean {np.mean(durations):.1f} s)")
    print(
        f"clean: {n_trimmed} trimmed, {n_empty} without speech; lead-in cut: median "
        f"{np.median(trimmed_lead):.2f} s (95th pct {np.percentile(trimmed_lead, 95):.2f}), tail cut: median "
        f"{np.median(trimmed_tail):.2f} s (95th pct {np.percentile(trimmed_tail, 95):.2f})"
    )
    for name, d in diffs.items():
        d = np.array(d) * 1000
        print(
            f"{name:>16}: {len(d)}/{n} with speech; window start vs clean: median {np.median(d[:, 0]):+.0f} ms, "
            f"|95th pct| {np.percentile(np.abs(d[:, 0]), 95):.0f} ms; end: median {np.median(d[:, 1]):+.0f} ms, "
            f"|95th pct| {np.percentile(np.abs(d[:, 1]), 95):.0f} ms; padding kept: mean "
            f"{np.mean(kept_pad[name]):.2f} s of {2 * PAD_S:.0f}"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model")
    p.add_argument("--manifest")
    p.add_argument("--librispeech", metavar="DIR")
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--work", default="/tmp/bench_gating")
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    if args.librispeech:
        librispeech_bench(args)
    if args.manifest:
        if not args.model:
            p.error("--manifest needs --model")
        model_bench(args)
    print(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load": os.getloadavg()}))


if __name__ == "__main__":
    main()
