#!/usr/bin/env bash
# GPU smoke test of the real CLI path: asr train (bf16 auto, DataLoader workers) -> evaluate -> transcribe on a
# tiny synthetic corpus built here (python -m asr synth --output-dir data/gpu_tiny --train 200 --dev 40 --test 20) and
# carried with the wheels of scripts/gpu_check.sh; then a short 100h-config throughput check.
set -u; export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit 1
python3 - <<'PY'
import torch
from asr.model.network import ModelDimensions, ASRModel
from asr.model.features import FeatureConfig
m = ASRModel(ModelDimensions(vocab_size=29, hidden_size=64, num_layers=2), FeatureConfig()).cuda()
x = torch.randn(2, 16000, device="cuda"); l = torch.tensor([16000, 9000], device="cuda")
with torch.autocast("cuda", dtype=torch.bfloat16):
    f, fl = m.features(x, l); y, _ = m.encoder.frontend(f, fl)
    out, _ = m.encoder.layers[0].forward_cell(y)
    print("autocast dtype", torch.get_autocast_dtype("cuda"), "conv out", y.dtype, "lstm out", out.dtype)
PY
timeout 200 python3 -m asr train --train-manifest data/gpu_tiny/train.jsonl --val-manifest data/gpu_tiny/dev.jsonl --output-dir /tmp/exp --max-epochs 3 data.num_workers=4 data.max_batch_seconds=60 2>&1 | grep -vE "it/s|^\s*$" | tail -25
python3 -m asr evaluate --model /tmp/exp/model.pt --manifest data/gpu_tiny/test.jsonl --bf16
python3 -m asr transcribe --model /tmp/exp/model.pt data/gpu_tiny/test/test-000000.wav data/gpu_tiny/test/test-000001.wav
timeout 90 python3 scripts/bench_train.py --config recipes/librispeech/conf/train_100h.yaml --durations librispeech --device cuda --precision bf16 --steps 60 --warmup 10 --no-peak 2>&1 | grep -E "THROUGHPUT|padding|step time|peak memory|RNN"
