#!/usr/bin/env bash
# LibriSpeech recipe: download, unpack, prepare manifests, train a DeepSpeech2-like RNN-CTC model, evaluate.
#
#   recipes/librispeech/run.sh                                   # all stages, train-clean-100 (conf/train_100h.yaml)
#   recipes/librispeech/run.sh --size 960h                       # all 960 h (conf/train_960h.yaml)
#   recipes/librispeech/run.sh --stage 3 --stop-stage 4 trainer.max_epochs=30   # config overrides last
#
# Stages: 0 download (MD5-checked, resumable; with OpenSLR 11's pruned 3-gram LM and vocabulary), 1 extract,
# 2 prepare manifests, 3 train, 4 evaluate on dev-clean, dev-other, test-clean and test-other and write the WER
# table into RESULTS.md; then tune the LM's weights on dev-clean and evaluate again with it (NO_LM=1 skips).
# Runs from the repository root whatever the current folder. Every stage skips work already done, so an
# interrupted run can simply be restarted; delete $EXP to train again.
# Settings come from the environment: DATA (default $ASR_DATA_DIR or data), EXP, PYTHON, CONF, RESULTS,
# EVAL_SETS, NO_LM, ASR_OPENSLR_MIRROR (e.g. https://us.openslr.org/resources or https://openslr.elda.org/resources).
set -euo pipefail

stage=0
stop_stage=4
size=100h
overrides=()
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage="$2"; shift 2 ;;
    --stop-stage) stop_stage="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *=*) overrides+=("$1"); shift ;;
    *) echo "unknown option: $1 (expected --stage N --stop-stage M --size 100h|960h [section.key=value ...])" >&2
       exit 2 ;;
  esac
done
case "$size" in
  100h) train_parts="train-clean-100" ;;
  960h) train_parts="train-clean-100 train-clean-360 train-other-500" ;;
  *) echo "--size must be 100h or 960h, got $size" >&2; exit 2 ;;
esac

cd "$(dirname "$0")/../.."

if [ -z "${PYTHON:-}" ]; then
  if command -v python >/dev/null 2>&1; then PYTHON=python; else PYTHON=python3; fi
fi
DATA="${DATA:-${ASR_DATA_DIR:-data}}"
D="$DATA/LibriSpeech"
EXP="${EXP:-exp/librispeech_$size}"
CONF="${CONF:-recipes/librispeech/conf/train_$size.yaml}"
RESULTS="${RESULTS:-recipes/librispeech/RESULTS.md}"
EVAL_SETS="${EVAL_SETS:-dev-clean dev-other test-clean test-other}"
# shellcheck disable=SC2206
parts=($train_parts $EVAL_SETS)

log() { echo "$(date '+%H:%M:%S') [stage $1] $2"; }
# A manifest counts as done only if its first audio path opens (one written by an older release may not).
manifest_ok() {
  [ -f "$1" ] && "$PYTHON" -c 'import os, sys; from asr.data.manifest import iter_manifest
u = next(iter_manifest(sys.argv[1], strict=False), None); sys.exit(0 if u and os.path.isfile(u.audio_filepath) else 1)' "$1"
}

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log 0 "download ${parts[*]} -> $DATA/downloads (verified archives are not fetched again)"
  "$PYTHON" -m asr librispeech download --data-dir "$DATA" --parts "${parts[@]}"
  [ -n "${NO_LM:-}" ] || "$PYTHON" -m asr librispeech-lm download --data-dir "$DATA"
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log 1 "extract -> $D (archives already unpacked are skipped)"
  "$PYTHON" -m asr librispeech extract --data-dir "$DATA" --parts "${parts[@]}"
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  todo=()
  for p in "${parts[@]}"; do manifest_ok "$D/$p.jsonl" || todo+=("$p"); done
  if [ ${#todo[@]} -eq 0 ]; then
    log 2 "manifests exist, skipping (delete $D/<split>.jsonl to prepare again)"
  else
    log 2 "prepare ${todo[*]}"
    "$PYTHON" -m asr librispeech prepare --data-dir "$DATA" --parts "${todo[@]}"
  fi
  # Manifest paths are relative to $D, so concatenating manifests in the same folder is safe.
  # shellcheck disable=SC2086
  (cd "$D" && cat $(printf '%s.jsonl ' $train_parts) > "train-$size.jsonl.tmp" && mv "train-$size.jsonl.tmp" "train-$size.jsonl")
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  if [ -f "$EXP/model.pt" ]; then
    log 3 "$EXP/model.pt exists, skipping training"
  else
    log 3 "training -> $EXP (resumes from $EXP/checkpoints/last.ckpt if a run was interrupted)"
    # A run cut short before its first checkpoint left only its config and logs: start it over (--overwrite).
    resume=(--overwrite)
    [ -f "$EXP/checkpoints/last.ckpt" ] && resume=(--resume)
    "$PYTHON" -m asr train --config "$CONF" ${resume[@]+"${resume[@]}"} \
      --train-manifest "$D/train-$size.jsonl" --val-manifest "$D/dev-clean.jsonl" --output-dir "$EXP" \
      ${overrides[@]+"${overrides[@]}"}
  fi
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  for s in $EVAL_SETS; do
    if [ -f "$EXP/report_$s.json" ] && [ "$EXP/report_$s.json" -nt "$EXP/model.pt" ]; then
      log 4 "$EXP/report_$s.json is up to date"
    else
      log 4 "evaluating on $s"
      "$PYTHON" -m asr evaluate --model "$EXP/model.pt" --manifest "$D/$s.jsonl" --report "$EXP/report_$s.json"
    fi
  done
  # One row per training size in RESULTS.md (replaced on a rerun): WER (%) per evaluation set.
  "$PYTHON" - "$EXP" "$size" "$RESULTS" $EVAL_SETS <<'PY'
import json, sys
from pathlib import Path

exp, size, results, sets = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4:]
columns = ("dev-clean", "dev-other", "test-clean", "test-other")
wer = {}
for s in sets:
    r = json.loads((exp / f"report_{s}.json").read_text())
    wer[s] = 100 * r["wer"]
    print(f"{s:<12} WER {wer[s]:6.2f} %  CER {100 * r['cer']:6.2f} %  ({r['num_utterances']} utterances)")
cells = " | ".join(f"{wer[c]:.2f}" if c in wer else "-" for c in columns)
row = f"| {size} | {cells} | {exp} |"
lines = results.read_text().splitlines() if results.exists() else []
mine = [i for i, line in enumerate(lines) if line.startswith(f"| {size} |")]
table = [i for i, line in enumerate(lines) if line.startswith("|")]
if mine:
    lines[mine[0]] = row
else:
    lines.insert(table[-1] + 1 if table else len(lines), row)
results.write_text("\n".join(lines) + "\n")
print(f"results: {results}")
PY
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ] && [ -z "${NO_LM:-}" ]; then
  # The same sets decoded with the official pruned 3-gram; its vocabulary is the lexicon (spelled by letters).
  LM="$DATA/LibriSpeech/lm"
  lm_args=(--lm "$LM/3-gram.pruned.1e-7.arpa.gz" --lexicon "$LM/librispeech-vocab.txt")
  if [ ! -f "$LM/librispeech-vocab.txt.verified" ]; then
    log 4 "no LM in $LM (stage 0 downloads it); skipping LM decoding"
  else
    if [ ! -f "$EXP/lm_params.json" ] || [ "$EXP/model.pt" -nt "$EXP/lm_params.json" ]; then
      log 4 "tuning the LM weight and word score on dev-clean"
      "$PYTHON" -m asr lm tune --model "$EXP/model.pt" --manifest "$D/dev-clean.jsonl" "${lm_args[@]}" \
        -o "$EXP/lm_params.json"
    fi
    for s in $EVAL_SETS; do
      log 4 "evaluating on $s with the LM"
      "$PYTHON" -m asr evaluate --model "$EXP/model.pt" --manifest "$D/$s.jsonl" "${lm_args[@]}" \
        --lm-params "$EXP/lm_params.json" --report "$EXP/report_lm_$s.json"
    done
  fi
fi
