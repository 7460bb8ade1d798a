"""The Lightning callbacks of ``asr train`` that are not a stage of their own: the per-epoch log line, and
``data.max_batch_seconds: auto`` resolved once the devices exist."""

from __future__ import annotations

import copy
import logging
import time

import lightning as L
import torch

from asr.training.batch_sizing import BatchChoice, amp_dtype_of, choose_auto_batch, steps_cap
from asr.training.config import DataConfig

log = logging.getLogger("asr")


class EpochLog(L.Callback):
    """One log line per epoch (loss, WER, CER, throughput): readable in a file, unlike a progress bar."""

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self._reset()

    def _reset(self) -> None:
        self.audio_seconds, self.loss_sum, self.steps, self.started = 0.0, 0.0, 0, time.time()

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._reset()

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, batch_idx) -> None:
        self.audio_seconds += float(batch["audio_lengths"].sum()) / self.sample_rate
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None and not getattr(module, "_skip_step", False):
            self.loss_sum += float(loss)
            self.steps += 1

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        m = trainer.callback_metrics
        pct = lambda key: f"{100 * float(m[key]):.2f} %" if key in m else "-"  # noqa: E731
        elapsed = time.time() - self.started
        log.info(
            "epoch %d: train_loss %.3f  val_wer %s  val_cer %s  %.0f audio-s/s per rank  (%.0f s)",
            trainer.current_epoch,
            self.loss_sum / max(self.steps, 1),
            pct("val_wer"),
            pct("val_cer"),
            self.audio_seconds / max(elapsed, 1e-9),
            elapsed,
        )


class AutoBatch(L.Callback):
    """``data.max_batch_seconds: auto``, resolved in Lightning's setup hook: the devices (and DDP's process group)
    exist there, and the data loaders and the optimizer are built after it, with the budget and learning rate
    chosen. A resumed run keeps the choice stored in its checkpoint (the sampler's position and the schedule
    refer to those batches), so it never probes again."""

    def __init__(
        self,
        data_config: DataConfig,
        longest_seconds: float,
        precision: str,
        stored: dict | None = None,
        epoch_seconds: float = float("inf"),
    ):
        self.data_config, self.longest, self.precision, self.stored = data_config, longest_seconds, precision, stored
        self.epoch_seconds = epoch_seconds
        self.choice: BatchChoice | None = None

    @property
    def state_key(self) -> str:
        return "AutoBatch"

    def state_dict(self) -> dict:
        return self.choice.to_dict() if self.choice else {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.choice is None:
            self.choice = self._choose(trainer, pl_module)
        self.data_config.max_batch_seconds = self.choice.batch_seconds
        pl_module.optim_config.lr = self.choice.lr

    def _choose(self, trainer: L.Trainer, module: L.LightningModule) -> BatchChoice:
        if self.stored:
            log.info(
                "data.max_batch_seconds: auto -> %.0f s, optim.lr %g, as chosen when this run started",
                self.stored["batch_seconds"],
                self.stored["lr"],
            )
            return BatchChoice(float(self.stored["batch_seconds"]), float(self.stored["lr"]), "resumed")
        from asr.training.batch_sizing import probe_batch_seconds

        device = trainer.strategy.root_device
        tokenizer = module.tokenizer

        def probe(limit: float) -> float:
            model = copy.deepcopy(module.model)
            try:
                return probe_batch_seconds(
                    model,
                    self.longest,
                    module.model.sample_rate,
                    len(tokenizer),
                    device,
                    amp_dtype_of(self.precision),
                    blank=tokenizer.blank_id,
                    max_batch_seconds=limit,
                ).batch_seconds
            finally:
                del model
                torch.cuda.empty_cache()

        def agree(seconds: float) -> float:  # every rank must cut the same batches and use the same lr
            if trainer.world_size == 1:
                return seconds
            value = torch.tensor(seconds, dtype=torch.float64, device=device)
            return float(trainer.strategy.reduce(value, reduce_op="min"))

        reference = self.data_config.reference_batch_seconds
        assert reference is not None  # DataConfig requires it with auto
        cap = steps_cap(
            self.epoch_seconds,
            self.data_config.auto_min_steps_per_epoch,
            trainer.world_size,
            trainer.accumulate_grad_batches,
            self.longest,
        )
        return choose_auto_batch(
            device.type == "cuda", probe, reference, module.optim_config.lr, agree, str(device), cap_seconds=cap
        )
