#!/usr/bin/env bash
# Speech Commands v2 recipe: download, unpack, split with the official lists, train an RNN-CTC model, evaluate.
#
#   recipes/speech_commands/run.sh                                # all stages, 35 words
#   recipes/speech_commands/run.sh --protocol 12                  # classic 10 words + unknown + silence
#   recipes/speech_commands/run.sh --stage 3 --stop-stage 4 model.hidden_size=128   # config overrides last
#
# Stages: 0 download (2.3 GB, MD5-checked, resumable), 1 extract, 2 prepare manifests, 3 train, 4 evaluate.
# Runs from the repository root whatever the current folder. Every stage skips work already done, so an
# interrupted run can simply be restarted; delete $EXP to train again.
# Settings come from the environment: DATA (default $ASR_DATA_DIR or data), EXP, PYTHON, CONF, RESULTS,
# ASR_SPEECH_COMMANDS_MIRROR (a mirror holding speech_commands_v0.02.tar.gz).
set -euo pipefail

stage=0
stop_stage=4
protocol=35
overrides=()
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage="$2"; shift 2 ;;
    --stop-stage) stop_stage="$2"; shift 2 ;;
    --protocol) protocol="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *=*) overrides+=("$1"); shift ;;
    *) echo "unknown option: $1 (expected --stage N --stop-stage M --protocol 35|12 [section.key=value ...])" >&2
       exit 2 ;;
  esac
done
case "$protocol" in
  35) name=35words ;;
  12) name=12class ;;
  *) echo "--protocol must be 35 or 12, got $protocol" >&2; exit 2 ;;
esac

cd "$(dirname "$0")/../.."

if [ -z "${PYTHON:-}" ]; then
  if command -v python >/dev/null 2>&1; then PYTHON=python; else PYTHON=python3; fi
fi
DATA="${DATA:-${ASR_DATA_DIR:-data}}"
D="$DATA/speech_commands_v0.02"
EXP="${EXP:-exp/speech_commands_$name}"
CONF="${CONF:-recipes/speech_commands/conf/train.yaml}"
RESULTS="${RESULTS:-recipes/speech_commands/RESULTS.md}"

log() { echo "$(date '+%H:%M:%S') [stage $1] $2"; }
# A manifest counts as done only if its first audio path opens (one written by an older release may not).
manifest_ok() {
  [ -f "$1" ] && "$PYTHON" -c 'import os, sys; from asr.data.manifest import iter_manifest
u = next(iter_manifest(sys.argv[1], strict=False), None); sys.exit(0 if u and os.path.isfile(u.audio_filepath) else 1)' "$1"
}

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log 0 "download -> $DATA/downloads (skipped if already verified)"
  "$PYTHON" -m asr speech-commands download --data-dir "$DATA"
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log 1 "extract -> $D (skipped if already done)"
  "$PYTHON" -m asr speech-commands extract --data-dir "$DATA"
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  if manifest_ok "$D/train_$name.jsonl" && manifest_ok "$D/test_$name.jsonl" && manifest_ok "$D/noise.jsonl"; then
    log 2 "$D/*_$name.jsonl exist, skipping (delete them to prepare again)"
  else
    log 2 "prepare the $protocol-class manifests"
    "$PYTHON" -m asr speech-commands prepare --data-dir "$DATA" --protocol "$protocol"
  fi
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  if [ -f "$EXP/model.pt" ]; then
    log 3 "$EXP/model.pt exists, skipping training"
  else
    log 3 "training -> $EXP (resumes from $EXP/checkpoints/last.ckpt if a run was interrupted)"
    # A run cut short before its first checkpoint left only its config and logs: start it over (--overwrite).
    again=(--overwrite)
    [ -f "$EXP/checkpoints/last.ckpt" ] && again=(--resume)
    "$PYTHON" -m asr train --config "$CONF" "${again[@]}" \
      --train-manifest "$D/train_$name.jsonl" --val-manifest "$D/validation_$name.jsonl" --output-dir "$EXP" \
      "augment.noise_manifest=$D/noise.jsonl" ${overrides[@]+"${overrides[@]}"}
  fi
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  log 4 "evaluating on the official test split"
  "$PYTHON" -m asr evaluate --model "$EXP/model.pt" --manifest "$D/test_$name.jsonl" \
    --report "$EXP/report_test.json"
  # A word is recognised when the transcript matches exactly, so exact match is the keyword accuracy.
  "$PYTHON" - "$EXP" "$name" "$RESULTS" <<'PY'
import json, sys
from pathlib import Path

exp, name, results = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
r = json.loads((exp / "report_test.json").read_text())
row = (f"| {name} | {exp} | {r['num_utterances']} | {100 * r['exact_match']:.2f} | {100 * r['wer']:.2f} "
       f"| {100 * r['cer']:.2f} |")
print(f"test accuracy (exact match) {100 * r['exact_match']:.2f} %, WER {100 * r['wer']:.2f} %")
lines = results.read_text().splitlines() if results.exists() else []
mine = [i for i, line in enumerate(lines) if line.startswith(f"| {name} |")]
table = [i for i, line in enumerate(lines) if line.startswith("|")]
if mine:
    lines[mine[0]] = row
else:
    lines.insert(table[-1] + 1 if table else len(lines), row)
text = "\n".join(lines) + "\n"
results.write_text(text)
print(f"results: {results}")
PY
fi
