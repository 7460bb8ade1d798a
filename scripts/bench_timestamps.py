#!/usr/bin/env python3
"""Word-timestamp accuracy of an ``asr`` model against eSpeak's own word times, and confidence calibration.

Why: a timestamp is only useful if it is where the word is. The synthetic corpus knows where every word starts
(eSpeak reports it while it speaks; manifests carry a ``words`` field), so the model's word times can be checked
on voices it never heard. For each utterance the model's posteriors are computed once; the reference transcript
is force-aligned to them (times of every word, whatever the recogniser got wrong), and so is the greedy
hypothesis, whose words that match the reference are timed too (what a user of ``asr transcribe`` gets) and
whose confidences are scored against correctness (AUROC: how well confidence separates right from wrong words).

A constant lag of the model's spikes behind the sound can be measured and removed (``--shift``); to see whether a
shift generalises, ``--fit-on`` picks it on some voice variants and reports the error on the others.

Examples::

    python scripts/bench_timestamps.py --build-test-set /tmp/ts   # the synth recipe's test split, with words
    python scripts/bench_timestamps.py --model exp/synth/model.pt --manifest /tmp/ts/test.jsonl
    python scripts/bench_timestamps.py --model exp/synth/model.pt --manifest /tmp/ts/test.jsonl --fit-on m7,f4
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch


def build_test_set(out_dir: Path, n_train: int, n_dev: int, n_test: int, seed: int, noise_prob: float) -> Path:
    """Render the test split that ``asr synth`` with these sizes draws (same texts, voices, conditions), with
    word times, without rendering train and dev."""
    from asr.corpora.synthetic import _render_to_file, draw_specs
    from asr.data.manifest import Utterance, write_manifest

    specs = draw_specs(out_dir, {"train": n_train, "dev": n_dev, "test": n_test}, seed, noise_prob)["test"]
    (out_dir / "test").mkdir(parents=True, exist_ok=True)
    utts = []
    for spec in specs:
        n, words = _render_to_file(spec)
        utts.append(
            Utterance(
                spec.path,
                round(n / 16000, 4),
                spec.text,
                {"speaker": spec.voice, "rate": spec.rate, "pitch": spec.pitch, "words": words},
            )
        )
    manifest = out_dir / "test.jsonl"
    write_manifest(manifest, utts)
    return manifest


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Probability that a random correct word scores above a random wrong one (ties count half)."""
    s, y = np.asarray(scores), np.asarray(labels, dtype=bool)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def describe(errors: Sequence[float]) -> str:
    e = np.abs(np.asarray(errors)) * 1000
    if len(e) == 0:
        return "no words"
    return (
        f"median {np.median(e):5.1f}  p90 {np.percentile(e, 90):5.1f}  p99 {np.percentile(e, 99):6.1f}  "
        f"max {e.max():6.1f} ms  (n={len(e)})"
    )


@torch.inference_mode()
def measure(model_path: str, manifest: str, limit: int | None) -> list[dict]:
    """Per reference word: voice, rate, reference times, reference-aligned times, and (when the hypothesis has
    the word) hypothesis-aligned times; plus one row per hypothesis word with its correctness and confidences."""
    from asr.data.audio import load_audio
    from asr.data.manifest import read_manifest
    from asr.decoding.alignment import align_words
    from asr.decoding.greedy import greedy_decode
    from asr.model.file import load_model

    loaded = load_model(model_path)
    model, tok = loaded.model, loaded.tokenizer
    fs = model.frame_seconds
    rows: list[dict] = []
    utts = read_manifest(manifest)[:limit]
    skipped = 0
    for utt in utts:
        words = utt.extra.get("words")
        if not words:
            skipped += 1
            continue
        audio = torch.from_numpy(load_audio(utt.audio_filepath, model.sample_rate))[None]
        log_probs, lengths = model(audio, torch.tensor([audio.shape[1]]))
        lp = log_probs[0, : int(lengths[0])]
        hyp = greedy_decode(log_probs, lengths, tok)[0]
        ref_al = align_words(lp, utt.text, tok, fs)
        hyp_min = align_words(lp, hyp, tok, fs, confidence="min")
        hyp_mean = align_words(lp, hyp, tok, fs, confidence="mean")
        ref_words = [w["word"] for w in words]
        matched = {}
        sm = difflib.SequenceMatcher(a=ref_words, b=[w.word for w in hyp_min], autojunk=False)
        for block in sm.get_matching_blocks():
            for k in range(block.size):
                matched[block.a + k] = block.b + k
        variant = utt.extra.get("speaker", "?").split("+")[-1]
        for i, (w, a) in enumerate(zip(words, ref_al)):
            if w["start"] is None:
                continue
            h = hyp_min[matched[i]] if i in matched else None
            rows.append(
                {
                    "kind": "ref",
                    "utt": utt.audio_filepath,
                    "index": i,
                    "variant": variant,
                    "rate": utt.extra.get("rate"),
                    "word": w["word"],
                    "true_start": w["start"],
                    "true_end": w["end"],
                    "start": a.start,
                    "end": a.end,
                    "hyp_start": h.start if h else None,
                    "hyp_end": h.end if h else None,
                }
            )
        hit = set(matched.values())
        for j, (a, b) in enumerate(zip(hyp_min, hyp_mean)):
            rows.append(
                {
                    "kind": "hyp",
                    "variant": variant,
                    "correct": j in hit,
                    "conf_min": a.confidence,
                    "conf_mean": b.confidence,
                }
            )
    if skipped:
        print(f"skipped {skipped} utterances without word times", file=sys.stderr)
    return rows


def report(rows: list[dict], shift: float, fit_on: set[str]) -> None:
    ref = [r for r in rows if r["kind"] == "ref"]
    signed = np.array([r["start"] - r["true_start"] for r in ref])
    end_signed = np.array([r["end"] - r["true_end"] for r in ref])
    first = np.array([r.get("index", 1) == 0 for r in ref])
    print(
        f"reference words: {len(ref)}; signed start error (model - eSpeak): mean {1000 * signed.mean():+.1f} ms, "
        f"median {1000 * np.median(signed):+.1f} ms"
    )
    print(f"start |error|, reference aligned:   {describe(signed - shift)}")
    print(
        f"end   |error|, reference aligned:   {describe(end_signed - shift)}  "
        f"(signed median {1000 * np.median(end_signed):+.1f} ms)"
    )
    for name, sel in (("first word of an utterance", first), ("every later word", ~first)):
        if sel.any():
            print(
                f"  {name}: start signed median {1000 * np.median(signed[sel]):+.1f} ms, |error| "
                f"{describe(signed[sel] - shift)}; end |error| {describe(end_signed[sel] - shift)}"
            )
    hyp = [r for r in ref if r["hyp_start"] is not None]
    print(
        f"start |error|, hypothesis aligned:  {describe([r['hyp_start'] - r['true_start'] - shift for r in hyp])}"
        f"  ({len(hyp)}/{len(ref)} reference words recognised)"
    )
    print(f"end   |error|, hypothesis aligned:  {describe([r['hyp_end'] - r['true_end'] - shift for r in hyp])}")
    later = ~first
    print(
        "later words' signed median start error per voice variant:  "
        + ", ".join(
            f"{v} {1000 * np.median(signed[later & np.array([r['variant'] == v for r in ref])]):+.0f} ms"
            for v in sorted({r["variant"] for r in ref})
        )
    )
    rates = np.array([r["rate"] or 0 for r in ref])
    for lo, hi in ((0, 150), (150, 175), (175, 1000)):
        sel = later & (rates >= lo) & (rates < hi)
        if sel.any():
            print(
                f"  rate {lo}-{hi} wpm, later words: signed median {1000 * np.median(signed[sel]):+.0f} ms, "
                f"|error| {describe(signed[sel] - shift)}"
            )
    if fit_on:
        # A constant lag is fitted on the later words only: the first word behaves differently (see above).
        fit = np.array([r["variant"] in fit_on for r in ref])
        for name, a, b in (
            (f"variants {','.join(sorted(fit_on))}", later & fit, later & ~fit),
            ("rates < 165 wpm", later & (rates < 165), later & (rates >= 165)),
            ("rates >= 165 wpm", later & (rates >= 165), later & (rates < 165)),
        ):
            picked = float(np.median(signed[a]))
            print(
                f"lag fitted on {name} ({a.sum()} later words): {1000 * picked:+.1f} ms; on the other later words "
                f"uncorrected {describe(signed[b])}; corrected {describe(signed[b] - picked)}"
            )
    hw = [r for r in rows if r["kind"] == "hyp"]
    correct = [r["correct"] for r in hw]
    print(
        f"hypothesis words: {len(hw)}, wrong {len(hw) - sum(correct)}; confidence AUROC (right vs wrong): "
        f"min {auroc([r['conf_min'] for r in hw], correct):.3f}, mean {auroc([r['conf_mean'] for r in hw], correct):.3f}"
    )
    for key in ("conf_min", "conf_mean"):
        conf = np.array([r[key] for r in hw])
        ok = np.array(correct, dtype=float)
        bins = np.clip((conf * 5).astype(int), 0, 4)
        cells = [
            f"{b / 5:.1f}-{(b + 1) / 5:.1f}: {ok[bins == b].mean():.2f} of {int((bins == b).sum())}"
            for b in range(5)
            if (bins == b).any()
        ]
        ece = sum(
            abs(ok[bins == b].mean() - conf[bins == b].mean()) * (bins == b).mean()
            for b in range(5)
            if (bins == b).any()
        )
        print(f"  {key}: share correct per confidence bin  {'; '.join(cells)}  (ECE {ece:.3f})")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model.pt")
    p.add_argument("--manifest", help="a manifest whose lines carry 'words' (the synth corpus writes them)")
    p.add_argument("--limit", type=int, default=None, help="first N utterances only")
    p.add_argument("--shift", type=float, default=0.0, help="seconds subtracted from the model's times")
    p.add_argument("--fit-on", default="", help="voice variants (m7,f4,...) to pick a shift on; others test it")
    p.add_argument("--build-test-set", metavar="DIR", help="render the synth recipe's test split with word times")
    p.add_argument("--sizes", default="5000,300,300", help="train,dev,test sizes of the corpus to mirror")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise-prob", type=float, default=0.3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dump", metavar="JSON", help="also write the per-word rows here (for further analysis)")
    p.add_argument("--rows", metavar="JSON", help="report on rows written by --dump instead of running the model")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.build_test_set:
        n_train, n_dev, n_test = (int(x) for x in args.sizes.split(","))
        start = time.time()
        manifest = build_test_set(
            Path(args.build_test_set).resolve(), n_train, n_dev, n_test, args.seed, args.noise_prob
        )
        print(f"wrote {manifest} ({time.time() - start:.1f} s)")
        return 0
    if not (args.model and args.manifest) and not args.rows:
        p.error("--model and --manifest are required (or --rows JSON, or --build-test-set DIR)")
    print(f"$ python scripts/bench_timestamps.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    start = time.time()
    if args.rows:
        rows = json.loads(Path(args.rows).read_text())
    else:
        rows = measure(args.model, args.manifest, args.limit)
    if args.dump:
        Path(args.dump).write_text(json.dumps(rows))
    report(rows, args.shift, {v for v in args.fit_on.split(",") if v})
    print(f"({time.time() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
