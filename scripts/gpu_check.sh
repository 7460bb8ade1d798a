#!/usr/bin/env bash
# One prepared GPU session: training throughput, padding, precision and inference speed of the asr recipes.
#
# Why one script: GPU time is scarce and each machine start costs minutes, so everything worth measuring runs
# in one call, each part boxed by `timeout` and by a shared time budget so a slow part cannot starve the rest,
# and every part writes its log and JSON into $OUT even when a later part fails (no `set -e`).
#
# Run from the repository root on the GPU machine (Python 3.12 with torch/lightning/numpy/scipy already there;
# the missing pure-Python and small binary packages travel as wheels in .whl/, an ignored folder that must be
# carried along):
#   bash scripts/gpu_check.sh                          # writes into $OUT (default /tmp/gpu_check)
# Knobs (environment variables):
#   GPU_CHECK_BUDGET=330   seconds for all parts together; a part that would not fit is skipped
#   A_STEPS=150 B_STEPS=50 C_STEPS=40 E_STEPS=40 WARMUP=10   measured/warm-up steps of the training parts
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_SKIP_WHEELS=1 GPU_CHECK_TINY=1 PY=.venv/bin/python
#                          local dry run: CPU, no wheel install, tiny models and 2 steps (catches typos only)
set -u
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.." || exit 1

if [ "${GPU_CHECK_SKIP_WHEELS:-0}" != 1 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit 1
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi

PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
DEVICE=${GPU_CHECK_DEVICE:-cuda}
BUDGET=${GPU_CHECK_BUDGET:-330}
WARMUP=${WARMUP:-10}
A_STEPS=${A_STEPS:-150}
B_STEPS=${B_STEPS:-50}
C_STEPS=${C_STEPS:-40}
E_STEPS=${E_STEPS:-40}
LS_CONF=recipes/librispeech/conf/train_100h.yaml
SYNTH_CONF=recipes/synth/conf.yaml
# Extra arguments for every bench_train / bench_infer call, and model overrides (empty on the GPU).
TRAIN_EXTRA=()
INFER_EXTRA=()
OVR=()
INFER_FILES=8
if [ "${GPU_CHECK_TINY:-0}" = 1 ]; then
  WARMUP=1; A_STEPS=2; B_STEPS=2; C_STEPS=2; E_STEPS=2; INFER_FILES=1
  TRAIN_EXTRA=(--threads 1 --num-utterances 300 --peak-size 256 --stack-reps 1)
  INFER_EXTRA=(--threads 1 --duration 2 --min-seconds 0.1 --max-reps 3)
  OVR=(model.hidden_size=32 model.num_layers=1 data.max_batch_seconds=40 data.num_workers=0)
fi

START=$SECONDS
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
T=0

# budget CAP: sets T to the seconds the next part may take (its cap or what is left of the budget).
budget() {
  local left=$(( BUDGET - (SECONDS - START) ))
  T=$(( $1 < left ? $1 : left ))
}

# part NAME MIN_SECONDS CMD...: runs CMD under `timeout $T`, log in $OUT/NAME.log, one line in summary.txt.
part() {
  local name=$1 min=$2
  shift 2
  if [ "$T" -lt "$min" ]; then
    echo "== $name: skipped, ${T}s left of the budget (needs $min)" | tee -a "$SUMMARY"
    return
  fi
  echo "== $name (timeout ${T}s): $*"
  local t0=$SECONDS rc
  timeout -k 10 "$T" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  tail -n 25 "$OUT/$name.log"
  echo "$name: rc=$rc, $(( SECONDS - t0 ))s$( [ $rc -eq 124 ] && echo ' (TIMED OUT)')" | tee -a "$SUMMARY"
}

echo "== environment"
{
  date -u
  nvidia-smi 2>&1 | head -n 15 || echo "no nvidia-smi"
  "$PY" - <<'EOF'
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "cudnn", torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu", p.name, f"{p.total_memory / 2**30:.1f} GiB", p.multi_processor_count, "SMs",
          "bf16", torch.cuda.is_bf16_supported(), "cudnn.allow_tf32", torch.backends.cudnn.allow_tf32)
import lightning, librosa, soundfile, jiwer, numpy
print("lightning", lightning.__version__, "librosa", librosa.__version__, "soundfile", soundfile.__version__,
      "jiwer", jiwer.__version__ if hasattr(jiwer, "__version__") else "?", "numpy", numpy.__version__)
EOF
} 2>&1 | tee "$OUT/environment.txt"

# (a) the LibriSpeech 100 h recipe as it trains: bf16, duration bucketing, LibriSpeech-like durations.
run_a() {
  part "a_train100h_bf16_bucketing$1" 60 "$PY" scripts/bench_train.py --config $LS_CONF --durations librispeech \
    --device "$DEVICE" --precision bf16 --steps "$A_STEPS" --warmup "$WARMUP" --max-seconds $(( T > 60 ? T - 50 : 10 )) \
    --json "$OUT/a_train100h_bf16_bucketing$1.json" "${TRAIN_EXTRA[@]}" "${OVR[@]}"
}
budget 150
run_a ""

# (b) the same without bucketing: random fixed-count batches with the same mean batch size (padding's cost).
budget 90
part b_train100h_bf16_random 50 "$PY" scripts/bench_train.py --config $LS_CONF --durations librispeech \
  --device "$DEVICE" --precision bf16 --no-bucketing --steps "$B_STEPS" --warmup $(( WARMUP < 5 ? WARMUP : 5 )) \
  --max-seconds $(( T > 50 ? T - 40 : 10 )) --json "$OUT/b_train100h_bf16_random.json" "${TRAIN_EXTRA[@]}" "${OVR[@]}"

# (c) fp32 (cuDNN may still use TF32) with bucketing, for the bf16 speed-up.
budget 80
part c_train100h_fp32_bucketing 45 "$PY" scripts/bench_train.py --config $LS_CONF --durations librispeech \
  --device "$DEVICE" --precision 32 --steps "$C_STEPS" --warmup $(( WARMUP < 5 ? WARMUP : 5 )) \
  --max-seconds $(( T > 45 ? T - 35 : 10 )) --json "$OUT/c_train100h_fp32_bucketing.json" "${TRAIN_EXTRA[@]}" "${OVR[@]}"

# (d) inference: RTF of the 100 h model at batch 1 and 32, fp32 and bf16; cold load; asr transcribe on WAVs.
budget 60
part d_infer100h 25 "$PY" scripts/bench_infer.py --config $LS_CONF --device "$DEVICE" --batch-sizes 1,32 \
  --duration 10 --bf16 --min-seconds 0.5 --max-reps 20 --synth-files $INFER_FILES \
  --json "$OUT/d_infer100h.json" "${INFER_EXTRA[@]}" "${OVR[@]}"

# (e) the synth recipe's small model on the GPU (short utterances: per-step overheads dominate).
budget 45
part e_train_synth 25 "$PY" scripts/bench_train.py --config $SYNTH_CONF --durations synth \
  --device "$DEVICE" --precision bf16 --steps "$E_STEPS" --warmup $(( WARMUP < 5 ? WARMUP : 5 )) \
  --max-seconds $(( T > 30 ? T - 20 : 10 )) --json "$OUT/e_train_synth.json" "${TRAIN_EXTRA[@]}" "${OVR[@]}"

# (f) the padding-invariance guarantee of RecurrentLayer on cuDNN: a short utterance alone vs padded in a batch.
budget 40
part f_padding_invariance_gpu 15 "$PY" - "$DEVICE" <<'EOF'
import sys
import torch
from asr.model.features import FeatureConfig
from asr.model.network import ASRModel, ModelDimensions

device = torch.device(sys.argv[1])
torch.manual_seed(0)
for cell in ("lstm", "gru"):
    dims = ModelDimensions(vocab_size=29, cell=cell, hidden_size=64, num_layers=2, dropout=0.0, subsampling=4)
    model = ASRModel(dims, FeatureConfig()).to(device).eval()
    audio = torch.randn(3, 48000, device=device)
    lengths = torch.tensor([48000, 20000, 7777], device=device)
    for bf16 in (False, True):
        torch.backends.cudnn.allow_tf32 = bf16  # fp32 without TF32, so a tight tolerance is fair
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            batch, out_lens = model(audio, lengths)
            alone, _ = model(audio[2:, :7777], lengths[2:])
        n = int(out_lens[2])
        diff = (batch[2, :n] - alone[0, :n]).abs().max().item()
        tol = 2e-2 if bf16 else 1e-3  # a backward cell that reads the padding gives ~0.1 here
        print(f"{cell} {'bf16' if bf16 else 'fp32'}: max |batched - alone| = {diff:.2e} (tolerance {tol:g})")
        assert diff < tol, "padding reached the outputs"
print("padding invariance OK on", device)
EOF

# (g) the model tests, as an environment check of the carried wheels (they run on the CPU).
budget 45
part g_pytest_model 20 "$PY" -m pytest -q -p no:cacheprovider tests/test_model.py

echo "== done in $(( SECONDS - START ))s; logs and JSON in $OUT"
cat "$SUMMARY"
