#!/usr/bin/env bash
# Mini LibriSpeech recipe (OpenSLR 31: train-clean-5, 5 h of 28 readers, and dev-clean-2): real read speech that
# trains on a laptop's CPU. Download, prepare, train, evaluate, n-gram LM.
#
#   recipes/mini_librispeech/run.sh                                # all stages, 10 minutes of training
#   recipes/mini_librispeech/run.sh --local /corpora/LibriSpeech --split     # an unpacked copy, no dev-clean-2
#   INIT_FROM=exp/synth/model.pt recipes/mini_librispeech/run.sh   # fine-tune a synthetic-speech model
#   recipes/mini_librispeech/run.sh --stage 3 trainer.max_minutes=20          # config overrides last
#
# Stages: 0 download train-clean-5 + dev-clean-2 (MD5-checked, resumable), 1 extract, 2 manifests and the
# speaker-disjoint sets, 3 train (validating on dev), 4 greedy WER on test, 5 character n-gram LM from the training
# transcripts, its weights tuned on dev, test WER with it (NO_LM=1 skips). --local DIR reads an unpacked
# LibriSpeech folder in place (stages 0-1 do nothing). Sets: dev-clean-2's speakers are cut in two, dev and test;
# --split holds DEV_SPEAKERS (2) and TEST_SPEAKERS (4) of train-clean-5's 28 out instead (for a copy without
# dev-clean-2). Every stage skips work already done; delete $EXP to train again. Environment: DATA, EXP, CONF,
# PYTHON, INIT_FROM, DEV_SPEAKERS, TEST_SPEAKERS, SEED, NO_LM, RESULTS (a table to add a row to), ASR_OPENSLR_MIRROR.
set -euo pipefail

stage=0
stop_stage=5
local_dir=""
split=0
overrides=()
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage="$2"; shift 2 ;;
    --stop-stage) stop_stage="$2"; shift 2 ;;
    --local) local_dir="$2"; shift 2 ;;
    --split) split=1; shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *=*) overrides+=("$1"); shift ;;
    *) echo "unknown option: $1 (expected --stage N --stop-stage M --local DIR --split [section.key=value ...])" >&2
       exit 2 ;;
  esac
done

cd "$(dirname "$0")/../.."

if [ -z "${PYTHON:-}" ]; then
  if command -v python >/dev/null 2>&1; then PYTHON=python; else PYTHON=python3; fi
fi
DATA="${DATA:-${ASR_DATA_DIR:-data}}"
D="$DATA/LibriSpeech"
CONF="${CONF:-recipes/mini_librispeech/conf/train.yaml}"
SEED="${SEED:-0}"
if [ "$split" = 1 ]; then
  parts=(train-clean-5)
  EXP="${EXP:-exp/mini_librispeech_split}"
  TRAIN="$D/train-clean-5.train.jsonl"; DEV="$D/train-clean-5.dev.jsonl"; TEST="$D/train-clean-5.test.jsonl"
else
  parts=(train-clean-5 dev-clean-2)
  EXP="${EXP:-exp/mini_librispeech}"
  TRAIN="$D/train-clean-5.jsonl"; DEV="$D/dev-clean-2.dev.jsonl"; TEST="$D/dev-clean-2.test.jsonl"
fi
if [ -n "$local_dir" ]; then
  [ -d "$local_dir" ] || { echo "--local $local_dir: no such folder" >&2; exit 2; }
  for p in "${parts[@]}"; do
    if [ ! -d "$local_dir/$p" ]; then
      hint=""; [ "$p" = dev-clean-2 ] && hint=" (add --split to hold speakers of train-clean-5 out instead)"
      echo "--local $local_dir has no $p folder$hint" >&2; exit 2
    fi
  done
fi

log() { echo "$(date '+%H:%M:%S') [stage $1] $2"; }
# A manifest counts as done only if its first audio path opens.
manifest_ok() {
  [ -f "$1" ] && "$PYTHON" -c 'import os, sys; from asr.data.manifest import iter_manifest
u = next(iter_manifest(sys.argv[1], strict=False), None); sys.exit(0 if u and os.path.isfile(u.audio_filepath) else 1)' "$1"
}

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  if [ -n "$local_dir" ]; then
    log 0 "--local $local_dir: nothing to download"
  else
    log 0 "download ${parts[*]} -> $DATA/downloads (verified archives are not fetched again)"
    "$PYTHON" -m asr librispeech download --data-dir "$DATA" --parts "${parts[@]}"
  fi
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  if [ -n "$local_dir" ]; then
    log 1 "--local $local_dir: read in place, nothing to extract"
  else
    log 1 "extract -> $D (archives already unpacked are skipped)"
    "$PYTHON" -m asr librispeech extract --data-dir "$DATA" --parts "${parts[@]}"
  fi
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  todo=()
  for p in "${parts[@]}"; do manifest_ok "$D/$p.jsonl" || todo+=("$p"); done
  if [ ${#todo[@]} -eq 0 ]; then
    log 2 "manifests exist (delete $D/<part>.jsonl to prepare again)"
  else
    log 2 "prepare ${todo[*]}"
    source_args=()
    [ -n "$local_dir" ] && source_args=(--source "$local_dir")
    "$PYTHON" -m asr librispeech prepare --data-dir "$DATA" --parts "${todo[@]}" ${source_args[@]+"${source_args[@]}"}
  fi
  # The held-out sets are a pure function of the manifest, the counts and the seed, so cutting them again is
  # cheap and always agrees with the manifest.
  if [ "$split" = 1 ]; then
    log 2 "holding ${DEV_SPEAKERS:-2} dev and ${TEST_SPEAKERS:-4} test speakers of train-clean-5 out"
    "$PYTHON" -m asr librispeech split --manifest "$D/train-clean-5.jsonl" \
      --dev-speakers "${DEV_SPEAKERS:-2}" --test-speakers "${TEST_SPEAKERS:-4}" --seed "$SEED"
  else
    log 2 "dev-clean-2's speakers: half for dev (validation, LM tuning), the rest for test"
    "$PYTHON" -m asr librispeech split --manifest "$D/dev-clean-2.jsonl" \
      --dev-speakers "${DEV_SPEAKERS:-50%}" --test-speakers rest --seed "$SEED"
  fi
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  if [ -f "$EXP/model.pt" ]; then
    log 3 "$EXP/model.pt exists, skipping training"
  else
    log 3 "training -> $EXP${INIT_FROM:+ (fine-tuning $INIT_FROM)}"
    extra=()
    [ -f "$EXP/checkpoints/last.ckpt" ] && extra=(--resume)
    [ -n "${INIT_FROM:-}" ] && [ ! -f "$EXP/checkpoints/last.ckpt" ] && extra=(--init-from "$INIT_FROM")
    "$PYTHON" -m asr train --config "$CONF" ${extra[@]+"${extra[@]}"} \
      --train-manifest "$TRAIN" --val-manifest "$DEV" --output-dir "$EXP" ${overrides[@]+"${overrides[@]}"}
  fi
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  if [ -f "$EXP/report_test.json" ] && [ "$EXP/report_test.json" -nt "$EXP/model.pt" ]; then
    log 4 "$EXP/report_test.json is up to date"
  else
    log 4 "greedy decoding of $TEST (speakers unseen in training)"
    "$PYTHON" -m asr evaluate --model "$EXP/model.pt" --manifest "$TEST" --report "$EXP/report_test.json"
  fi
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ] && [ -z "${NO_LM:-}" ]; then
  LM="$EXP/lm"
  mkdir -p "$LM"
  if [ -f "$LM/report_test.json" ] && [ "$LM/report_test.json" -nt "$EXP/model.pt" ]; then
    log 5 "$LM/report_test.json is up to date"
  else
    # Lexicon-free character 6-gram: 5 h of text covers few of a new book's words, and a word LM can only emit
    # words it has seen; letters carry over. Built from the training transcripts only, tuned on dev only.
    # The grid is 3 x 3 points: each point beam-searches the whole dev set again (~0.02 x real time each).
    log 5 "character 6-gram from $TRAIN -> $LM/char6.arpa; weights tuned on $DEV"
    "$PYTHON" -m asr lm build "$TRAIN" -o "$LM/char6.arpa" --order 6 --unit char --model "$EXP/model.pt"
    "$PYTHON" -m asr lm tune --model "$EXP/model.pt" --manifest "$DEV" --lm "$LM/char6.arpa" \
      -o "$LM/params.json" --lm-weights "${LM_WEIGHTS:-0.5:2.5:1}" --word-scores "${WORD_SCORES:-0:2:1}"
    log 5 "decoding $TEST with the LM"
    "$PYTHON" -m asr evaluate --model "$EXP/model.pt" --manifest "$TEST" --lm "$LM/char6.arpa" \
      --lm-params "$LM/params.json" --report "$LM/report_test.json"
  fi
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 4 ]; then
  # The test figures side by side; with RESULTS set, also a row of its table (replaced on a rerun of $EXP).
  "$PYTHON" - "$EXP" "$TEST" "${RESULTS:-}" <<'PY'
import json, sys, time
from pathlib import Path

exp, test, results = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
greedy = json.loads((exp / "report_test.json").read_text())
lm_file = exp / "lm" / "report_test.json"
lm = json.loads(lm_file.read_text()) if lm_file.is_file() else None
print(f"{'test set (' + test + ')':<60} {'WER':>7} {'CER':>7}")
for name, r in (("greedy", greedy), ("with the character 6-gram LM", lm)):
    if r is not None:
        print(f"{name:<60} {100 * r['wer']:6.2f}% {100 * r['cer']:6.2f}%")
if results:
    from asr.model.file import load_model

    meta = load_model(exp / "model.pt").metadata
    init = meta.get("init_from") or {}
    cells = [
        time.strftime("%Y-%m-%d"),
        str(meta.get("git_commit") or "-")[:7],
        "fine-tuned from " + str(init.get("source", "a model")) if init else "scratch",
        f"{meta.get('train_hours', 0):.2f}",
        str(meta.get("steps", "-")),
        str(meta.get("train_minutes", "-")),
        f"{100 * greedy['wer']:.2f} / {100 * greedy['cer']:.2f}",
        f"{100 * lm['wer']:.2f} / {100 * lm['cer']:.2f}" if lm else "-",
        str(greedy["num_utterances"]),
        str(exp),
    ]
    row = "| " + " | ".join(cells) + " |"
    path = Path(results)
    lines = path.read_text().splitlines() if path.exists() else []
    mine = [i for i, line in enumerate(lines) if line.startswith("|") and line.rstrip().endswith(f"| {exp} |")]
    table = [i for i, line in enumerate(lines) if line.startswith("|")]
    if mine:
        lines[mine[0]] = row
    else:
        lines.insert(table[-1] + 1 if table else len(lines), row)
    path.write_text("\n".join(lines) + "\n")
    print(f"results: {path}")
PY
fi
