"""A real two-process DDP run on CPU (gloo), launched the way users launch it: ``torchrun --nproc_per_node 2``.

Lightning sees torchrun's environment (TorchElasticEnvironment) and joins its process group instead of starting
processes itself; ``trainer.devices`` must then equal ``--nproc_per_node``.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed

from asr.model.file import load_model

WORKER = Path(__file__).with_name("ddp_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="torch.distributed with gloo is needed",
)
def test_two_rank_ddp_run_splits_the_data_and_keeps_the_weights_identical(tiny_corpus, tmp_path):
    """Also: a batch that one rank cannot decode is skipped on both (before, that rank returned before the
    collective that decides to skip, and the ranks' collectives paired wrongly: a hang or silent divergence),
    and with a time budget both ranks use the same learning rate at every step (before, each its own clock);
    early stopping stops both ranks after the same validation."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        str(WORKER),
        str(tiny_corpus["train"]),
        str(tiny_corpus["dev"]),
        str(tmp_path),
    ]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the DDP run hung: {(e.stderr or b'')[-3000:]!r}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    runs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in runs] == [2, 2]
    assert runs[0]["global_step"] == runs[1]["global_step"] > 0
    n_train = sum(1 for _ in open(tiny_corpus["train"]))
    assert len(runs[0]["epochs"]) == len(runs[1]["epochs"]) == 2
    for e0, e1 in zip(runs[0]["epochs"], runs[1]["epochs"]):
        assert e0["steps"] == e1["steps"] > 1
        assert e0["dropped"] == e1["dropped"] == 0
        seen0 = [i for b in e0["indices"] for i in b]
        seen1 = [i for b in e1["indices"] for i in b]
        assert len(seen0) == len(set(seen0)) and len(seen1) == len(set(seen1))
        assert not set(seen0) & set(seen1)
        assert set(seen0) | set(seen1) == set(range(n_train))
    assert runs[0]["epochs"][0]["indices"] != runs[0]["epochs"][1]["indices"]  # reshuffled each epoch
    # rank 1's undecodable batch: counted there, and the step skipped on both ranks
    assert [r["skipped_utterances"] > 0 for r in runs] == [False, True]
    assert [r["skipped_batches"] for r in runs] == [1, 1]
    assert runs[0]["lrs"] == runs[1]["lrs"]  # bit for bit, although the clocks differ

    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for kind in ("weights", "ema"):
        a, b = states[0][kind], states[1][kind]
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), f"{kind} differ between ranks"
    meta = load_model(tmp_path / "model.pt").metadata
    assert meta["epochs"] == 2 and meta["stop_reason"].startswith("early stopping")
    assert meta["batch"] == {"batch_seconds": 6.0, "lr": 1e-3, "how": "CPU fallback"}
