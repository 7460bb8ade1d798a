#!/usr/bin/env bash
# GPU check of the training path that CPU tests cannot reach: 16-mixed (fp16 + GradScaler) steps through
# CTCModule's optimizer_step override (skipped batches), an interrupted run resumed from last.ckpt, and
# data.max_batch_seconds: auto (probe + sqrt LR scaling) inside `asr train`. Noise audio with random
# transcripts: it checks that training runs and resumes, not that it learns.
#   bash scripts/gpu_training_check.sh        # on the GPU machine; writes into $OUT (default /tmp/gpu_training_check)
set -u
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.." || exit 1
PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu_training_check}
D=$OUT/data
mkdir -p "$D"
$PY - "$D" <<'PY'
import json, sys
from pathlib import Path
import numpy as np, soundfile as sf
d = Path(sys.argv[1]); rng = np.random.default_rng(0)
words = "turn on the lights move blue bottle shelf four two six eight".split()
for split, n in (("train", 64), ("dev", 8)):
    with open(d / f"{split}.jsonl", "w") as f:
        for i in range(n):
            sec = float(rng.uniform(1.0, 4.0)); path = d / f"{split}{i}.wav"
            sf.write(path, (rng.standard_normal(int(sec * 16000)) * 0.05).astype("float32"), 16000)
            f.write(json.dumps({"audio_filepath": path.name, "duration": sec,
                                "text": " ".join(rng.choice(words, 3))}) + "\n")
PY
TINY="model.hidden_size=64 model.num_layers=2 data.num_workers=2 trainer.progress_bar=false trainer.log_every_n_steps=1"
run() { echo "\$ asr train $*"; $PY -m asr train --train-manifest "$D/train.jsonl" --val-manifest "$D/dev.jsonl" "$@"; echo "rc=$?"; }
run --output-dir "$OUT/a" --max-epochs 2 $TINY data.max_batch_seconds=20 trainer.max_steps=5
run --output-dir "$OUT/a" --max-epochs 3 --resume $TINY data.max_batch_seconds=20
run --output-dir "$OUT/b" --max-epochs 1 $TINY data.max_batch_seconds=auto data.reference_batch_seconds=20
$PY - "$OUT" <<'PY'
import sys, torch
for run in ("a", "b"):
    m = torch.load(f"{sys.argv[1]}/{run}/model.pt", map_location="cpu", weights_only=True)["metadata"]
    print(run, {k: m.get(k) for k in ("precision", "epochs", "steps", "stop_reason", "batch", "final_lr")})
PY
