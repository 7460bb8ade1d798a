#!/usr/bin/env bash
# GPU check of data loading end to end: do DataLoader workers reading and decoding FLAC from tar shards keep one
# GPU fed, and how many workers does it take? (docs/benchmarks.md, "Data loading"; docs/multi_gpu.md.)
#
# Why one script: GPU time is scarce and each machine start costs minutes, so every part runs in one call, boxed
# by `timeout` and by a shared time budget, each writing its log and JSON into $OUT even when a later one fails.
#
# Parts:
#   0  data: LIBRISPEECH=DIR (an extracted LibriSpeech split, carried to the machine) or, without it, N_UTT FLAC
#      files of noise under a speech-like envelope at LibriSpeech's durations (FLAC of noise decodes at about
#      the speed of speech: the decoder's cost is per sample), packed with `asr shard` into 300-s shards.
#   a  one worker's rate on this machine's cores: scripts/bench_dataload.py (loose files and shards).
#   b  the 100 h recipe's model (5 x BiLSTM-512) trained from the shards through `asr train`'s own path
#      (asr.training.train.train, ShardStream, DataLoader workers, 16-mixed) for STEPS steps, with
#      data.num_workers in $WORKERS, at the recipe's 1,200-s batch (N_UTT=6000, 20 h, gives one epoch of ~70
#      steps: no epoch end inside the measurement); audio-s/s over the steps after the first WARM, from a
#      callback. Where a row falls short of the in-memory figure (part c), the GPU waited for data; the worker
#      count where the rows stop rising is what this GPU needs at that rate. (`auto`'s 16,551-s batches would
#      need a corpus of ~200 h to fill an epoch of 40 steps; its need follows from part a and the in-memory rate.)
#   c  the same model and batches with the audio in memory (scripts/bench_train.py): what the GPU eats.
#
# Run from the repository root on the GPU machine (torch/lightning there; the other wheels in .whl/, carried):
#   bash scripts/gpu_dataload_check.sh                 # writes into $OUT (default /tmp/gpu_dataload_check)
# Knobs: GPU_CHECK_BUDGET=480 (s, all parts), N_UTT=6000, STEPS=40, WARM=8, WORKERS="1 2 4 8 12", BATCHES=1200,
#   LIBRISPEECH=DIR, GPU_CHECK_DEVICE=cpu GPU_CHECK_SKIP_WHEELS=1 GPU_CHECK_TINY=1 PY=.venv/bin/python
#   (a local dry run on CPU: a tiny model, 60 files, 3 steps; it catches typos, it measures nothing).
set -u
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.." || exit 1

if [ "${GPU_CHECK_SKIP_WHEELS:-0}" != 1 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit 1
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi

PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu_dataload_check}
D=$OUT/data
mkdir -p "$D"
DEVICE=${GPU_CHECK_DEVICE:-cuda}
BUDGET=${GPU_CHECK_BUDGET:-480}
N_UTT=${N_UTT:-6000}
STEPS=${STEPS:-40}
WARM=${WARM:-8}
WORKERS=${WORKERS:-"1 2 4 8 12"}
BATCHES=${BATCHES:-"1200"}
CONF=recipes/librispeech/conf/train_100h.yaml
OVR=()
A_SECONDS=20
if [ "${GPU_CHECK_TINY:-0}" = 1 ]; then
  N_UTT=60; STEPS=3; WARM=1; WORKERS="1 2"; BATCHES="60"; A_SECONDS=2
  OVR=(model.hidden_size=32 model.num_layers=1 model.conv_channels=4)
fi

START=$SECONDS
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
T=0
budget() {
  local left=$(( BUDGET - (SECONDS - START) ))
  T=$(( $1 < left ? $1 : left ))
}
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
  tail -n 20 "$OUT/$name.log"
  echo "$name: rc=$rc, $(( SECONDS - t0 ))s$( [ $rc -eq 124 ] && echo ' (TIMED OUT)')" | tee -a "$SUMMARY"
}

{
  date -u; nproc; nvidia-smi 2>&1 | head -n 12 || echo "no nvidia-smi"
  "$PY" -c "import torch, webdataset; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'webdataset', webdataset.__version__)"
} 2>&1 | tee "$OUT/environment.txt"

# (0) data: a FLAC manifest, a small dev manifest, and the shards.
budget 120
part 0_data 30 "$PY" - "$D" "$N_UTT" "${LIBRISPEECH:-}" <<'EOF'
import json, sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
import numpy as np, soundfile as sf

d, n, ls = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
words = "turn on the lights move blue bottle shelf four two six eight seven".split()

def make(i):
    rng = np.random.default_rng(i)
    sec = float(np.clip(rng.gamma((12.3 / 4) ** 2, 16 / 12.3), 1.0, 24.0))
    t = np.arange(int(sec * 16000)) / 16000
    env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 5) * t) ** 2  # syllable-rate envelope
    audio = (rng.standard_normal(t.size) * 0.05 * env).astype("float32")
    path = d / "flac" / f"utt{i:05d}.flac"
    sf.write(path, audio, 16000, subtype="PCM_16")
    text = " ".join(rng.choice(words, max(1, int(sec * 2.2))))
    return {"audio_filepath": str(path), "duration": round(sec, 4), "text": text}

if ls:
    from asr.corpora.librispeech import read_split
    rows = [u.to_json() | {"audio_filepath": u.audio_filepath} for u in read_split(ls)][:n]
else:
    (d / "flac").mkdir(exist_ok=True)
    with ProcessPoolExecutor() as ex:
        rows = list(ex.map(make, range(n), chunksize=32))
for name, part in (("train", rows), ("dev", rows[:16])):
    with open(d / f"{name}.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in part)
print(len(rows), "utterances,", round(sum(r["duration"] for r in rows) / 3600, 2), "h")
EOF
budget 60
part 0_shard 10 "$PY" -m asr shard "$D/train.jsonl" -o "$D/shards" --shard-seconds 300 --force
SHARDS=$(tail -n 1 "$OUT/0_shard.log")

# (a) one worker's audio-s/s from loose files and from shards, on this machine's cores.
budget 150
part a_one_worker 30 "$PY" scripts/bench_dataload.py --manifest "$D/train.jsonl" --seconds "$A_SECONDS" \
  --work "$D/bench" --rows loose_flac,shards_flac,shards_flac_features --json "$OUT/a_one_worker.json"

# (c) first: the in-memory reference, what the GPU eats at each batch.
for B in $BATCHES; do
  budget 90
  part "c_in_memory_$B" 30 "$PY" scripts/bench_train.py --config $CONF --manifest "$D/train.jsonl" --device "$DEVICE" \
    --precision 16 --steps "$STEPS" --warmup "$WARM" --no-peak --stack-reps 0 --json "$OUT/c_in_memory_$B.json" \
    data.max_batch_seconds="$B" "${OVR[@]}"
done

# (b) end to end from the shards, through asr train's path, per worker count and batch.
for B in $BATCHES; do
  for W in $WORKERS; do
    budget 75
    part "b_shards_${B}s_${W}w" 30 "$PY" - "$SHARDS" "$D" "$OUT" "$B" "$W" "$STEPS" "$WARM" "$DEVICE" "${OVR[@]}" <<'EOF'
import json, sys, time
from pathlib import Path
import lightning as L
from asr.training.config import load_config
from asr.training.train import train

shards, d, out, b, w, steps, warm, device, *ovr = sys.argv[1:]
steps, warm = int(steps), int(warm)

class Rate(L.Callback):
    def __init__(self):
        self.t, self.audio = [], []
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if device == "cuda":
            import torch; torch.cuda.synchronize()
        self.t.append(time.perf_counter()); self.audio.append(float(batch["audio_lengths"].sum()) / 16000)

rate = Rate()
config = load_config("recipes/librispeech/conf/train_100h.yaml", [
    f"data.max_batch_seconds={b}", f"data.num_workers={w}", f"trainer.max_steps={warm + steps}",
    "trainer.precision=16-mixed" if device == "cuda" else "trainer.precision=32-true",
    f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}", "trainer.devices=1",
    "trainer.progress_bar=false", "trainer.max_epochs=-1", *ovr])
config.data.train_shards = shards
manifest = str(Path(shards).parent / "tarred_audio_manifest.json")
train(config, manifest, f"{d}/dev.jsonl", f"{out}/run_{b}_{w}", callbacks=[rate])
t, a = rate.t[warm:], rate.audio[warm + 1:]
result = {"batch_seconds": float(b), "workers": int(w), "steps": len(a),
          "audio_s_per_s": round(sum(a) / (t[-1] - t[0]), 1) if len(t) > 1 else None}
print(json.dumps(result))
Path(f"{out}/b_shards_{b}s_{w}w.json").write_text(json.dumps(result))
EOF
  done
done

echo "== summary"; cat "$SUMMARY"
"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for p in sorted(out.glob("*.json")):
    try:
        j = json.loads(p.read_text())
    except ValueError:
        continue
    if "rows" in j:
        for r in j["rows"]:
            print(p.stem, r["row"], r["audio_s_per_s"], "audio-s/s per worker")
    elif "workers" in j:
        print(p.stem, j["audio_s_per_s"], "audio-s/s end to end")
    else:  # bench_train.py's JSON: its throughput, wherever it is nested
        found = []
        def walk(x):
            if isinstance(x, dict):
                found.extend(v for k, v in x.items() if k == "audio_s_per_s")
                [walk(v) for v in x.values()]
            elif isinstance(x, list):
                [walk(v) for v in x]
        walk(j)
        print(p.stem, found[:1], "audio-s/s with the audio in memory")
EOF
