"""Checkpoints that survive every way a run ends: written whole or not at all, and ``last.ckpt`` always current.

Lightning's ``ModelCheckpoint`` with a monitored metric refreshes ``last.ckpt`` only when it also saves a top-k
checkpoint, so a run whose validation WER stopped improving kept an old ``last.ckpt`` and ``--resume`` rewound it.
:class:`LastCheckpoint` writes ``last.ckpt`` itself: at the end of every epoch and at every stop (time budget,
Ctrl-C, SIGTERM, ``max_steps``), always at a batch boundary, so the checkpoint holds a state the run really
passed through and a resume continues with the next batch (see ``asr.training.datamodule.ResumableDataLoader``).

:class:`AtomicCheckpointIO` writes every checkpoint (top-k, last, SLURM's ``hpc_ckpt``) to a temporary file in
the same folder and renames it over the old one: a full disk or a kill while writing leaves the previous file
intact instead of a truncated one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from asr.errors import CheckpointWriteError  # noqa: F401  (re-exported: raised here, caught as asr.ASRError)

log = logging.getLogger("asr")


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to ``<path>.tmp`` in the same folder, flushed to disk, then ``os.replace`` onto ``path``.

    Lightning's own writer stages the file in the system's temporary folder and moves it, which is a copy (not a
    rename) when that folder is on another file system, and can leave a truncated file behind.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise CheckpointWriteError(
                e.errno,
                f"{path}: could not write the checkpoint ({e.strerror or e}); "
                "the previous file there, if any, is intact",
            ) from e
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


class LastCheckpoint(Checkpoint):
    """Writes ``dirpath/last.ckpt`` at every epoch end and whenever training stops at a batch boundary.

    A stop is ``trainer.should_stop`` set by an earlier callback in the same ``on_train_batch_end`` (the time
    budget, Ctrl-C and SIGTERM in :class:`asr.training.run_control.RunControl`, which all ranks agree on) or ``max_steps``
    reached. Lightning runs ``Checkpoint`` callbacks after all others, so whatever the other
    callbacks record for this batch is in the file. An epoch cut short by a stop is *not* saved again at its
    (early) ``on_train_epoch_end``: Lightning would then count the epoch as finished and a resume would skip its
    remaining batches.
    """

    def __init__(self, dirpath: str | os.PathLike, filename: str = "last.ckpt"):
        self.path = Path(dirpath) / filename
        self._saved_step = -1

    @property
    def state_key(self) -> str:
        return "LastCheckpoint"

    def save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.path)
        self._saved_step = trainer.global_step
        log.info("saved %s (epoch %d, step %d)", self.path, trainer.current_epoch, trainer.global_step)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        max_steps_reached = 0 <= trainer.max_steps <= trainer.global_step
        if trainer.should_stop or max_steps_reached:
            self.save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        finished = trainer.fit_loop.epoch_loop.batch_progress.current.completed >= trainer.num_training_batches
        if finished and not trainer.sanity_checking:
            self.save(trainer)
