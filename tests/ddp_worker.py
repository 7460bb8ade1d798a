"""One rank of the DDP test, started by torchrun: ``torchrun --nproc_per_node 2 ddp_worker.py TRAIN VAL OUT``.

Trains the tiny model through :func:`asr.train.train` exactly as ``asr train`` would, and records what this rank
saw: the dataset indices of every training batch, the sampler's drop count per epoch, and the final weights.
"""

import json
import os
import sys

import lightning as L
import torch

from asr.averaging import EMACallback
from asr.config import load_config
from asr.train import train

from conftest import TINY_MODEL  # tests/ is sys.path[0] when this file runs as a script



class Recorder(L.Callback):
    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.epochs: list[dict] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.epochs.append({"indices": [], "steps": 0, "dropped": trainer.train_dataloader.batch_sampler.num_dropped})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.epochs[-1]["indices"].append(list(batch["indices"]))
        self.epochs[-1]["steps"] += 1

    def on_fit_end(self, trainer, pl_module):
        rank = trainer.global_rank
        ema = next(cb for cb in trainer.callbacks if isinstance(cb, EMACallback))
        torch.save({"weights": {k: v.cpu() for k, v in pl_module.state_dict().items()},
                    "ema": {k: v.cpu() for k, v in ema.state_dict_for(pl_module).items()}},
                   os.path.join(self.out_dir, f"rank{rank}.pt"))
        with open(os.path.join(self.out_dir, f"rank{rank}.json"), "w") as f:
            json.dump({"world_size": trainer.world_size, "global_step": trainer.global_step,
                       "epochs": self.epochs}, f)


def main(train_manifest: str, val_manifest: str, out_dir: str) -> None:
    config = load_config(None, [*TINY_MODEL, "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp",
                                "trainer.max_epochs=2", "trainer.ema_decay=0.9", "data.num_workers=0",
                                "data.max_batch_seconds=6"])
    train(config, train_manifest, val_manifest, out_dir, callbacks=[Recorder(out_dir)])


if __name__ == "__main__":
    main(*sys.argv[1:])
