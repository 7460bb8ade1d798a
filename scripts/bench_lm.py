#!/usr/bin/env python3
"""What language-model decoding costs on top of the model: real-time factor of beam search vs greedy, batch 1.

Why separately from bench_infer.py: the beam search runs on the CPU after the model, one utterance at a time,
whatever device the model ran on, so its cost is best stated as extra seconds per second of audio. Each
utterance of ``--manifest`` goes through the model alone (batch 1, as a live user's file would), then the
timings cover decoding its log-probs: greedy, and beam search with each ``--lm`` (weights from ``--lm-params``
when given). The model's own RTF is printed beside them for scale.

    python scripts/bench_lm.py --model exp/synth/model.pt --manifest data/synth/test.jsonl \\
        --lm exp/synth/lm/word3.arpa --lm-params exp/synth/lm/word3_params.json --limit 100
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Sequence

import torch


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--lm", nargs="+", required=True, help="one or more ARPA files (word or char)")
    p.add_argument("--lm-params", nargs="*", default=[], help="parameter files, in the order of --lm")
    p.add_argument("--lexicon", help="lexicon for the word LMs")
    p.add_argument("--beam-size", type=int, default=32)
    p.add_argument("--limit", type=int, default=100, help="utterances to time (from the start of the manifest)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (the decoder uses one)")
    p.add_argument("--json", help="write the figures to this file")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from asr.data.audio import load_audio
    from asr.data.manifest import read_manifest
    from asr.decoding.beam_search import BeamSearchDecoder, BeamSearchOptions
    from asr.decoding.greedy import GreedyDecoder
    from asr.decoding.ngram import read_arpa_info
    from asr.model.file import load_model

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    loaded = load_model(args.model, "cpu")
    sr = loaded.model.sample_rate
    utts = read_manifest(args.manifest)[: args.limit]
    outputs, audio_s, model_s = [], 0.0, 0.0
    with torch.inference_mode():
        for u in utts:
            audio = torch.from_numpy(load_audio(u.audio_filepath, sr))[None]
            start = time.perf_counter()
            lp, lens = loaded.model(audio, torch.tensor([audio.shape[1]]))
            model_s += time.perf_counter() - start
            audio_s += audio.shape[1] / sr
            outputs.append((lp.float(), lens))

    def time_decoder(decoder) -> float:
        decoder(*outputs[0])  # warm-up
        start = time.perf_counter()
        for lp, lens in outputs:
            decoder(lp, lens)
        return time.perf_counter() - start

    rows = [{"decoder": "greedy", "seconds": time_decoder(GreedyDecoder(loaded.tokenizer))}]
    for i, lm in enumerate(args.lm):
        options = BeamSearchOptions.from_file(args.lm_params[i]) if i < len(args.lm_params) else BeamSearchOptions()
        options.beam_size = args.beam_size
        lexicon = None if read_arpa_info(lm).is_char_level else args.lexicon
        decoder = BeamSearchDecoder(loaded.tokenizer, lm, lexicon, options)
        rows.append(
            {
                "decoder": f"beam {args.beam_size}, {decoder.mode}, {os.path.basename(lm)}",
                "seconds": time_decoder(decoder),
                "lm_weight": options.lm_weight,
                "word_score": options.word_score,
            }
        )
    greedy_rtf = rows[0]["seconds"] / audio_s
    print(f"{len(utts)} utterances, {audio_s:.1f} s of audio, batch 1, torch threads {torch.get_num_threads()}")
    print(f"model alone (features + encoder): RTF {model_s / audio_s:.4f}")
    print(f"{'decoder':<45} {'RTF':>8} {'extra RTF vs greedy':>20}")
    for r in rows:
        r["rtf"] = r["seconds"] / audio_s
        r["extra_rtf"] = r["rtf"] - greedy_rtf
        print(f"{r['decoder']:<45} {r['rtf']:>8.4f} {r['extra_rtf']:>20.4f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {"utterances": len(utts), "audio_s": audio_s, "model_rtf": model_s / audio_s, "rows": rows}, f, indent=1
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
