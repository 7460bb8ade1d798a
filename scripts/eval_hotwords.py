"""Hotword figures (docs/hotwords.md): recall of the listed words and the WER on all other words, with and
without the list, greedy or with a word LM.

    python scripts/eval_hotwords.py --model M --manifest test.jsonl --hotwords hot.tsv [--lm word.arpa]

A listed word counts as recalled where the hypothesis has it as often as the reference (per utterance, up to the
reference's count); one more than the reference is a false alarm. "WER on the rest" drops the listed words from
both sides and scores what remains, so it shows what the list costs the other words.
"""

from __future__ import annotations

import argparse
import json
import time

import jiwer

from asr.data.manifest import read_manifest
from asr.data.tokenizer import normalize_text
from asr.decoding.hotwords import read_hotwords
from asr.inference.transcribe import transcribe
from asr.model.file import load_model


def score(refs: list[str], hyps: list[str], listed: set[str]) -> dict:
    found = total = false_alarms = 0
    rest_refs, rest_hyps = [], []
    for ref, hyp in zip(refs, hyps):
        r, h = ref.split(), hyp.split()
        for w in listed:
            n = r.count(w)
            total += n
            found += min(n, h.count(w))
            false_alarms += max(0, h.count(w) - n)
        rest_refs.append(" ".join(x for x in r if x not in listed) or "-")
        rest_hyps.append(" ".join(x for x in h if x not in listed) or "-")
    return {
        "recall": round(found / max(total, 1), 4),
        "listed_in_reference": total,
        "false_alarms": false_alarms,
        "wer_rest": round(jiwer.wer(rest_refs, rest_hyps), 4),
        "wer_all": round(jiwer.wer(refs, [h or "-" for h in hyps]), 4),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--hotwords", required=True)
    p.add_argument("--lm", help="a word ARPA LM (lexicon search); default greedy")
    p.add_argument("--lm-weight", type=float, default=1.0)
    p.add_argument("--word-score", type=float, default=0.0)
    args = p.parse_args()
    loaded = load_model(args.model)
    utts = read_manifest(args.manifest)
    refs = [normalize_text(u.text) for u in utts]
    listed = {normalize_text(w) for w in read_hotwords(args.hotwords)}
    for name, hotwords in (("without", None), ("with", args.hotwords)):
        decoder = None
        if args.lm:
            from asr.decoding.beam_search import build_decoder

            decoder = build_decoder(
                loaded.tokenizer, args.lm, lm_weight=args.lm_weight, word_score=args.word_score, hotwords=hotwords
            )
            hotwords = None  # the LM decoder carries them
        started = time.time()
        ts = transcribe(loaded, [u.audio_filepath for u in utts], decoder=decoder, hotwords=hotwords)
        out = score(refs, [t.text or "" for t in ts], listed)
        print(f"{name:8s}{json.dumps(out)}  ({time.time() - started:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
