"""Streaming latency of a forward-only model: compute per chunk, and how long after a word ends it shows up.

    python scripts/bench_streaming.py --model exp/synth_streaming/model.pt --manifest data/synth/test.jsonl \
        --aligner exp/synth/model.pt --limit 100
    python scripts/bench_streaming.py --model exp/la0/model.pt exp/la4/model.pt --manifest data/synth/test.jsonl

Several models (one per look-ahead setting, ``model.lookahead_frames``) are measured one after the other on the
same utterances and summed up in a table at the end.

* Compute: wall time of each ``accept`` call for chunks of ``--chunk-ms`` of audio (mean / p95 ms, and the
  real-time factor), at batch 1 with ``--threads`` torch threads.
* Word delay: each utterance is fed in chunks as fast as possible and the partial text is recorded after each
  chunk; a hypothesis word "appears" with the first chunk after which the partial's words up to it equal the
  final's, and its audio time is the end of that chunk (the last word may need ``finish``: the end of the
  audio). The delay is that time minus the word's end in the audio, matched word by word with the reference.
  Word ends come from the manifest's ``words`` field (eSpeak's word times) when it has one, otherwise from a
  CTC forced alignment of the reference text with ``--aligner`` (best a bidirectional model): the end of the
  last frame aligned to the word's last letter, so good to about one frame of the aligner (30 ms at
  subsampling 3). Add the compute per chunk for the delay a live user sees.
"""

from __future__ import annotations

import argparse
import difflib
import platform
import sys
import time

import numpy as np
import torch

from asr.data.audio import load_audio
from asr.data.manifest import read_manifest
from asr.data.tokenizer import normalize_text
from asr.decoding.greedy import greedy_decode
from asr.inference.streaming import StreamingRecognizer
from asr.model.file import load_model


def forced_align(log_probs: torch.Tensor, ids: list[int], blank: int = 0) -> list[tuple[int, int]]:
    """Viterbi CTC alignment: for each token of ``ids``, the (first, last) frame it occupies."""
    t_len, s_len = log_probs.shape[0], 2 * len(ids) + 1
    labels = [blank if s % 2 == 0 else ids[s // 2] for s in range(s_len)]
    lp = log_probs[:, labels].double().numpy()  # (T, S)
    score = np.full((t_len, s_len), -np.inf)
    back = np.zeros((t_len, s_len), dtype=np.int64)
    score[0, 0], score[0, 1] = lp[0, 0], lp[0, 1]
    skip_ok = np.array([s % 2 == 1 and s >= 2 and labels[s] != labels[s - 2] for s in range(s_len)])
    for t in range(1, t_len):
        stay, step = score[t - 1], np.concatenate([[-np.inf], score[t - 1, :-1]])
        skip = np.where(skip_ok, np.concatenate([[-np.inf, -np.inf], score[t - 1, :-2]]), -np.inf)
        best = np.stack([stay, step, skip])
        back[t] = best.argmax(0)
        score[t] = best.max(0) + lp[t]
    s = s_len - 1 if score[-1, -1] >= score[-1, -2] else s_len - 2
    path = [s]
    for t in range(t_len - 1, 0, -1):
        s -= back[t, s]
        path.append(s)
    path.reverse()
    spans: dict[int, list[int]] = {}
    for t, s in enumerate(path):
        if s % 2 == 1:
            spans.setdefault(s // 2, [t, t])[1] = t
    return [tuple(spans.get(k, (0, 0))) for k in range(len(ids))]


def word_ends_by_alignment(aligner, audio: np.ndarray, text: str) -> list[float]:
    model, tok = aligner.model, aligner.tokenizer
    with torch.inference_mode():
        lp, _ = model(torch.from_numpy(audio)[None], torch.tensor([audio.shape[0]]))
    frame_s = audio.shape[0] / model.sample_rate / lp.shape[1]
    ids = tok.encode(text)
    spans = forced_align(lp[0], ids, tok.blank_id)
    ends, pos = [], 0
    for word in text.split():
        pos += len(word)  # index just past the word's last letter
        ends.append((spans[pos - 1][1] + 1) * frame_s)
        pos += 1  # the space
    return ends


def appearance_times(partials: list[tuple[float, str]], final: str) -> list[float]:
    """For each final word, the audio time of the first partial whose words up to it match the final's."""
    words = final.split()
    times = []
    for j in range(len(words)):
        for t, text in partials:
            w = text.split()
            if len(w) > j and w[: j + 1] == words[: j + 1]:
                times.append(t)
                break
    return times


def bench(loaded, utts, chunk: int, aligner) -> dict:
    """Stream every utterance through ``loaded`` in chunks of ``chunk`` samples; the figures of one model."""
    sr = loaded.model.sample_rate
    step_ms, finish_ms, delays, inner, audio_s, source = [], [], [], [], 0.0, set()
    recognizer = StreamingRecognizer(loaded, keep_log_probs=True)
    same_text, max_diff = 0, 0.0
    for utt in utts:
        audio = load_audio(utt.audio_filepath, sr)
        audio_s += audio.shape[0] / sr
        recognizer.reset()
        partials = []
        for i in range(0, audio.shape[0], chunk):
            t0 = time.perf_counter()
            part = recognizer.accept(audio[i : i + chunk])
            step_ms.append(1000 * (time.perf_counter() - t0))
            partials.append((part.seconds, part.text))
        t0 = time.perf_counter()
        final = recognizer.finish()
        finish_ms.append(1000 * (time.perf_counter() - t0))
        partials.append((final.seconds, final.text))
        with torch.inference_mode():  # the offline result of the same audio, for the equality check
            ref_lp, ref_len = loaded.model(torch.from_numpy(audio)[None], torch.tensor([audio.shape[0]]))
        same_text += final.text == greedy_decode(ref_lp, ref_len, loaded.tokenizer)[0]
        max_diff = max(max_diff, float((final.log_probs - ref_lp[0]).abs().max()))
        words = utt.extra.get("words")
        if words:
            ref_words, ends = [w["word"] for w in words], [float(w["end"]) for w in words]
            source.add("manifest word times")
        elif aligner is not None:
            ref = normalize_text(utt.text)
            ref_words, ends = ref.split(), word_ends_by_alignment(aligner, audio, ref)
            source.add("forced alignment")
        else:
            continue
        hyp_words = final.text.split()
        seen = appearance_times(partials, final.text)
        matcher = difflib.SequenceMatcher(a=ref_words, b=hyp_words, autojunk=False)
        for block in matcher.get_matching_blocks():
            for k in range(block.size):
                delays.append(1000 * (seen[block.b + k] - ends[block.a + k]))
                if block.a + k < len(ref_words) - 1:
                    inner.append(delays[-1])
    return {
        "steps": np.array(step_ms),
        "finish_ms": finish_ms,
        "audio_s": audio_s,
        "same_text": same_text,
        "max_diff": max_diff,
        "delays": np.array(delays),
        "inner": np.array(inner),
        "source": source,
    }


def _spread(d: np.ndarray) -> str:
    return (
        f"{d.size} words, median {np.median(d):.0f} ms, mean {d.mean():.0f} ms, "
        f"p10 {np.percentile(d, 10):.0f} ms, p90 {np.percentile(d, 90):.0f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--model",
        required=True,
        nargs="+",
        help="forward-only models (model.bidirectional: false), e.g. one per look-ahead",
    )
    p.add_argument("--manifest", required=True)
    p.add_argument("--aligner", help="model for forced-alignment word ends when the manifest has no 'words'")
    p.add_argument("--limit", type=int, default=100, help="utterances (the first N)")
    p.add_argument("--chunk-ms", type=float, default=100.0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    aligner = load_model(args.aligner) if args.aligner else None
    utts = read_manifest(args.manifest)[: args.limit]
    print(f"# {' '.join(sys.argv)}")
    print(f"# torch {torch.__version__}, {args.threads} thread(s), {platform.processor() or platform.machine()}")
    rows = []
    for path in args.model:
        loaded = load_model(path)
        chunk = int(round(loaded.model.sample_rate * args.chunk_ms / 1000))
        r = bench(loaded, utts, chunk, aligner)
        k, ms = loaded.model.dims.lookahead_frames, 1000 * loaded.model.lookahead_seconds
        steps = r["steps"]
        print(f"{path}: look-ahead {k} frames ({ms:g} ms)")
        print(f"  utterances {len(utts)}, audio {r['audio_s']:.1f} s, chunk {args.chunk_ms:g} ms")
        print(
            f"  compute per chunk: mean {steps.mean():.2f} ms, p95 {np.percentile(steps, 95):.2f} ms, "
            f"max {steps.max():.2f} ms; RTF {steps.sum() / 1000 / r['audio_s']:.3f}; "
            f"finish mean {np.mean(r['finish_ms']):.2f} ms"
        )
        print(
            f"  stream == offline: {r['same_text']}/{len(utts)} texts equal, "
            f"max |log-prob difference| {r['max_diff']:.2e}"
        )
        if r["delays"].size:
            print(f"  word delay (end of word -> in the partial text, audio time, {', '.join(sorted(r['source']))}):")
            print(f"    {_spread(r['delays'])}")
        if r["inner"].size:  # the last word's end is the least certain, and it may wait for finish()
            print(f"    all but each utterance's last word: {_spread(r['inner'])}")
        median = f"{np.median(r['inner']):.0f} ms" if r["inner"].size else "-"
        rows.append(
            f"| {k} ({ms:g} ms) | {steps.mean():.2f} / {np.percentile(steps, 95):.2f} ms | {median} | "
            f"{r['same_text']}/{len(utts)} |"
        )
    print(
        "\n| look-ahead | compute per chunk (mean / p95) | word delay, median (all but the last word) | stream == offline |"
    )
    print("|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
