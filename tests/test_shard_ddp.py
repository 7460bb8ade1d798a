"""Two-process DDP (gloo, CPU) training from 7 uneven tar shards, one DataLoader worker per rank.

Both ranks must run the same number of batches (or DDP would hang on the uneven last one), every utterance is
trained on once per epoch over the two ranks, each epoch ends within the timeout, and a run stopped mid-epoch and
resumed trains exactly the rest of that epoch's planned batches: none twice, none missing.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed

pytest.importorskip("webdataset")

from test_ddp import free_port
from test_shards import write_seven

from asr.data.shard_stream import ShardPlanner
from asr.data.shards import read_shard_manifest

WORKER = Path(__file__).with_name("ddp_shard_worker.py")
SEED = 1234  # trainer.seed's default, which the stream is seeded with


def launch(args, timeout=150):
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
        *map(str, args),
    ]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the sharded DDP run hung: {(e.stderr or b'')[-3000:]!r}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="torch.distributed with gloo is needed",
)
def test_two_ranks_from_seven_uneven_shards_equal_counts_each_utterance_once_and_a_mid_epoch_resume(
    tiny_corpus, tmp_path
):
    shards = write_seven(tiny_corpus["train"], tmp_path / "shards")
    lines = read_shard_manifest(shards.manifest)
    planner = ShardPlanner(
        [u.duration for u in lines], [u.extra["shard_id"] for u in lines], 7, 1, 2, 6.0, buffer_size=4, seed=SEED
    )
    per_epoch = len(planner)
    assert per_epoch >= 3
    stop = per_epoch + 2  # in the middle of the second epoch
    common = [shards.url_pattern, shards.manifest, tiny_corpus["dev"], tmp_path]
    launch([*common, "first", "fresh", "trainer.max_epochs=2", f"trainer.max_steps={stop}"])
    launch([*common, "second", "resume", "trainer.max_epochs=2"])

    first = [json.loads((tmp_path / f"first_rank{r}.json").read_text()) for r in (0, 1)]
    second = [json.loads((tmp_path / f"second_rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in first] == [2, 2] and {r["length"] for r in first + second} == {per_epoch}
    for epoch in (0, 1):
        seen = []
        for rank in (0, 1):
            mine = [b for e, b in first[rank]["batches"] + second[rank]["batches"] if e == epoch]
            assert len(mine) == per_epoch  # the same count on both ranks, in both runs together
            # exactly the planned batches, in order, across the stop and the resume (a pure function of the seed)
            assert mine == [b for b in planner.plan(epoch, rank).batches], (epoch, rank)
            seen += [i for b in mine for i in b]
        assert sorted(seen) == list(range(len(lines)))  # every utterance once per epoch: none twice, none missing
    assert [len(r["batches"]) for r in first] == [stop, stop]
    assert [len(r["batches"]) for r in second] == [2 * per_epoch - stop] * 2
