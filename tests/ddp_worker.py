"""One rank of the DDP test, started by torchrun: ``torchrun --nproc_per_node 2 ddp_worker.py TRAIN VAL OUT``.

Trains the tiny model through :func:`asr.training.train.train` exactly as ``asr train`` would, and records what this rank
saw: the dataset indices of every training batch, the sampler's drop count per epoch, the learning rate after
every step, and the final weights. Rank 1's second batch is made undecodable (as if every file in it were
missing), and the run has a time budget (large enough never to stop it), so each rank reads its own clock. Early
stopping ends it after its second epoch (of 3), on both ranks at once; ``data.max_batch_seconds: auto`` takes its
CPU fallback on every rank.
"""

import json
import os
import sys

import lightning as L
import torch
from conftest import TINY_MODEL  # tests/ is sys.path[0] when this file runs as a script

from asr.data.dataset import Skipped
from asr.training.averaging import EMACallback
from asr.training.config import load_config
from asr.training.train import train


class Recorder(L.Callback):
    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.epochs: list[dict] = []

        self.lrs: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.epochs.append({"indices": [], "steps": 0, "dropped": trainer.train_dataloader.batch_sampler.num_dropped})

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.epochs[-1]["indices"].append(list(batch["indices"]))
        self.epochs[-1]["steps"] += 1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_fit_end(self, trainer, pl_module):
        rank = trainer.global_rank
        ema = next(cb for cb in trainer.callbacks if isinstance(cb, EMACallback))
        torch.save(
            {
                "weights": {k: v.cpu() for k, v in pl_module.state_dict().items()},
                "ema": {k: v.cpu() for k, v in ema.state_dict_for(pl_module).items()},
            },
            os.path.join(self.out_dir, f"rank{rank}.pt"),
        )
        with open(os.path.join(self.out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(
                {
                    "world_size": trainer.world_size,
                    "global_step": trainer.global_step,
                    "epochs": self.epochs,
                    "lrs": self.lrs,
                    "skipped_batches": pl_module.skipped_batches,
                    "skipped_utterances": pl_module.skipped_utterances,
                },
                f,
            )


class UndecodableBatch(L.Callback):
    """Empties rank 1's second batch of the first epoch the way the collate function does when no file decodes."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_rank == 1 and trainer.current_epoch == 0 and batch_idx == 1:
            batch["skipped"] = [Skipped("injected", p, "file not found") for p in batch["paths"]]
            batch["audio"], batch["audio_lengths"] = batch["audio"][:0], batch["audio_lengths"][:0]
            batch["targets"], batch["target_lengths"] = batch["targets"][:0], batch["target_lengths"][:0]
            batch["texts"], batch["indices"], batch["paths"] = [], [], []


def main(train_manifest: str, val_manifest: str, out_dir: str) -> None:
    config = load_config(
        None,
        [
            *TINY_MODEL,
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.strategy=ddp",
            "trainer.max_epochs=3",
            "trainer.ema_decay=0.9",
            "data.num_workers=0",
            "data.max_batch_seconds=auto",
            "data.reference_batch_seconds=6",
            "trainer.max_minutes=60",
            # no validation can improve on the first by 100 points: both ranks stop after 2 (counted from the first
            # validation, though this tiny model stays at 100 % WER)
            "trainer.early_stopping_patience=1",
            "trainer.early_stopping_min_delta=1.0",
            "trainer.early_stopping_below_wer=null",
        ],
    )
    train(config, train_manifest, val_manifest, out_dir, callbacks=[Recorder(out_dir), UndecodableBatch()])


if __name__ == "__main__":
    main(*sys.argv[1:])
