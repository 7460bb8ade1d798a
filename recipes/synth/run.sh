#!/usr/bin/env bash
# Synthetic-speech recipe: build an eSpeak NG corpus, train an RNN-CTC model, evaluate on unseen voices.
#
#   recipes/synth/run.sh                         # all stages
#   recipes/synth/run.sh --stage 2 --stop-stage 3
#
# Runs from the repository root whatever the current folder. Every stage skips work already done, so an
# interrupted run can simply be restarted; delete $EXP (or $DATA/synth) to redo a stage.
# Settings come from the environment: DATA, EXP, CONF, PYTHON, N_TRAIN, N_DEV, N_TEST, SEED, NOISE_PROB, JOBS.
set -euo pipefail

stage=0
stop_stage=3
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage="$2"; shift 2 ;;
    --stop-stage) stop_stage="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1 (expected --stage N --stop-stage M)" >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/../.."

if [ -z "${PYTHON:-}" ]; then
  if command -v python >/dev/null 2>&1; then PYTHON=python; else PYTHON=python3; fi
fi
D="${DATA:-data}/synth"
EXP="${EXP:-exp/synth}"
CONF="${CONF:-recipes/synth/conf.yaml}"

log() { echo "$(date '+%H:%M:%S') [stage $1] $2"; }

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  # asr synth checks its own parameter stamp: it returns at once if $D is up to date, and refuses to
  # overwrite a corpus built with other settings.
  log 0 "synthetic corpus -> $D"
  "$PYTHON" -m asr synth --out "$D" \
    --train "${N_TRAIN:-5000}" --dev "${N_DEV:-300}" --test "${N_TEST:-300}" \
    --seed "${SEED:-0}" --noise-prob "${NOISE_PROB:-0.3}" --jobs "${JOBS:-2}"
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  if [ -f "$EXP/model.pt" ]; then
    log 1 "$EXP/model.pt exists, skipping training"
  else
    log 1 "training -> $EXP"
    "$PYTHON" -m asr train --config "$CONF" \
      --train-manifest "$D/train.jsonl" --val-manifest "$D/dev.jsonl" --output-dir "$EXP"
  fi
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  if [ -f "$EXP/test_report.json" ] && [ "$EXP/test_report.json" -nt "$EXP/model.pt" ]; then
    log 2 "$EXP/test_report.json is up to date, skipping evaluation"
  else
    log 2 "evaluating on $D/test.jsonl (voices unseen in training)"
    "$PYTHON" -m asr evaluate --model "$EXP/model.pt" --manifest "$D/test.jsonl" --report "$EXP/test_report.json"
  fi
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  # First test utterance; manifest paths are relative to the manifest's folder.
  read -r wav ref < <("$PYTHON" -c '
import sys
from asr.manifest import read_manifest
u = read_manifest(sys.argv[1])[0]
print(u.audio_filepath, u.text)' "$D/test.jsonl")
  log 3 "transcribing $wav"
  echo "reference : $ref"
  "$PYTHON" -m asr transcribe --model "$EXP/model.pt" "$wav"
fi
