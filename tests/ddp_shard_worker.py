"""One rank of the sharded DDP test, started by torchrun:
``torchrun --nproc_per_node 2 ddp_shard_worker.py SHARDS SHARD_MANIFEST VAL OUT TAG [RESUME] [section.key=value ...]``.

Trains the tiny model from tar shards through :func:`asr.training.train.train` with one DataLoader worker per
rank, and records what this rank saw: ``(epoch, dataset indices)`` of every training batch and the loader's
length, into ``OUT/TAG_rankN.json``.
"""

import json
import os
import sys

import lightning as L
from conftest import TINY_MODEL  # tests/ is sys.path[0] when this file runs as a script

from asr.training.config import load_config
from asr.training.train import train


class Recorder(L.Callback):
    def __init__(self, path: str):
        self.path = path
        self.batches: list[tuple[int, list[int]]] = []
        self.length = -1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.length = len(trainer.train_dataloader)
        self.batches.append((trainer.current_epoch, [int(i) for i in batch["indices"]]))

    def on_fit_end(self, trainer, pl_module):
        with open(self.path.format(rank=trainer.global_rank), "w") as f:
            json.dump({"world_size": trainer.world_size, "batches": self.batches, "length": self.length}, f)


def main(shards: str, manifest: str, val: str, out: str, tag: str, resume: str, *overrides: str) -> None:
    config = load_config(
        None,
        [
            *TINY_MODEL,
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.strategy=ddp",
            "data.num_workers=1",
            "data.max_batch_seconds=6",
            "data.shard_buffer=4",
            *overrides,
        ],
    )
    config.data.train_shards = shards
    recorder = Recorder(os.path.join(out, f"{tag}_rank{{rank}}.json"))
    train(config, manifest, val, os.path.join(out, "run"), resume=resume == "resume", callbacks=[recorder])


if __name__ == "__main__":
    main(*sys.argv[1:])
