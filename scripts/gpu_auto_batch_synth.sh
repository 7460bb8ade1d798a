#!/usr/bin/env bash
# On a GPU: does data.max_batch_seconds: auto reach the default batch's held-out WER on the synth corpus in the
# same number of epochs (issue 12)? Builds the synth corpus (espeak-ng through pip's espeakng-loader, ~1 min on
# 16 cores), trains the synth recipe's config twice for EPOCHS epochs, once with its fixed 40-s batches and once
# with auto (capped by data.auto_min_steps_per_epoch; reference_batch_seconds 40, so the learning rate is scaled
# from the recipe's), and evaluates both on the test voices (unseen in training). Prints each run's batch, steps,
# minutes and test WER; the model.pt metadata holds the rest.
#   bash scripts/gpu_auto_batch_synth.sh          # OUT (default /tmp/gpu_auto_batch_synth), EPOCHS (default 8)
# The same comparison emulated on a CPU (the batch and learning rate auto picks, given as fixed values) is in
# recipes/synth/RESULTS.md, "auto batch sizing on the synth corpus".
set -u
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.." || exit 1
PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu_auto_batch_synth}
EPOCHS=${EPOCHS:-8}
D=$OUT/data
mkdir -p "$OUT"
$PY -m asr synth --output-dir "$D" --train 5000 --dev 300 --test 300 --seed 0 --noise-prob 0.3 --jobs "$(nproc)" || exit 1
COMMON=(--config recipes/synth/conf.yaml --train-manifest "$D/train.jsonl" --val-manifest "$D/dev.jsonl"
        --max-epochs "$EPOCHS" trainer.max_minutes=null trainer.progress_bar=false data.num_workers=6)
for run in fixed auto; do
  if [ "$run" = auto ]; then extra=(data.max_batch_seconds=auto data.reference_batch_seconds=40); else extra=(); fi
  echo "\$ asr train ${COMMON[*]} ${extra[*]}"
  start=$(date +%s)
  $PY -m asr train "${COMMON[@]}" --output-dir "$OUT/$run" "${extra[@]}"; echo "rc=$? ($(( $(date +%s) - start )) s)"
  $PY -m asr evaluate --model "$OUT/$run/model.pt" --manifest "$D/test.jsonl" --report "$OUT/$run/test_report.json"
done
$PY - "$OUT" <<'PY'
import json, sys, torch
for run in ("fixed", "auto"):
    m = torch.load(f"{sys.argv[1]}/{run}/model.pt", map_location="cpu", weights_only=True)["metadata"]
    r = json.load(open(f"{sys.argv[1]}/{run}/test_report.json"))
    print(run, {k: m.get(k) for k in ("batch", "steps", "epochs", "train_minutes", "best_val_wer")},
          f"test WER {100 * r['wer']:.2f} %")
PY
