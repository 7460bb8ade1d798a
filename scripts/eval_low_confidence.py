"""How often the low-confidence warning fires on audio like the training data and on audio unlike it
(docs/models.md).

    python scripts/eval_low_confidence.py --model M --val dev.jsonl --test test.jsonl [--out /tmp/ood]

The validation profile is measured as ``asr train`` stores it in the card; each test file is then scored as
recorded, time-reversed (speech-like sound in no language: the classic out-of-domain probe), and at double
speed (a voice far outside the training rates). Prints the share of files the warning would flag and their WER.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

import jiwer
import numpy as np
import soundfile as sf

from asr.data.manifest import read_manifest
from asr.data.tokenizer import normalize_text
from asr.evaluation.confidence import confidence_profile, file_confidences
from asr.inference.transcribe import transcribe
from asr.model.card import LOW_CONFIDENCE_RATIO
from asr.model.file import load_model


def variant(paths: list[str], out: str, how: str) -> list[str]:
    made = []
    for i, p in enumerate(paths):
        audio, sr = sf.read(p, dtype="float32")
        if how == "reversed":
            audio = audio[::-1]
        elif how == "fast":
            audio = np.interp(np.arange(0, len(audio), 2.0), np.arange(len(audio)), audio).astype(np.float32)
        dest = os.path.join(out, f"{how}-{i:05d}.wav")
        sf.write(dest, audio, sr)
        made.append(dest)
    return made


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--val", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--out", default=None, help="folder for the altered audio (default: a temporary one)")
    args = p.parse_args()
    loaded = load_model(args.model)
    profile = confidence_profile(loaded, [u.audio_filepath for u in read_manifest(args.val)])
    print("validation", json.dumps(profile))
    threshold = LOW_CONFIDENCE_RATIO * profile["mean"]
    utts = read_manifest(args.test)
    refs = [normalize_text(u.text) for u in utts]
    out = args.out or tempfile.mkdtemp(prefix="asr-ood-")
    os.makedirs(out, exist_ok=True)
    original = [u.audio_filepath for u in utts]
    for how in ("as recorded", "reversed", "fast"):
        paths = original if how == "as recorded" else variant(original, out, how)
        conf = file_confidences(loaded, paths)
        hyps = [t.text or "-" for t in transcribe(loaded, paths)]
        judged = [c for c in conf if c is not None]
        flagged = sum(c < threshold for c in judged)
        print(
            f"{how:12s} files {len(paths)}, with words {len(judged)}, mean confidence "
            f"{np.mean(judged):.3f}, flagged {flagged} ({100 * flagged / max(len(judged), 1):.1f} %), "
            f"WER {100 * jiwer.wer(refs, hyps):.1f} %",
            flush=True,
        )


if __name__ == "__main__":
    main()
