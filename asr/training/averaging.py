"""Weight averaging: an exponential moving average during training, and the mean of the best checkpoints after.

Both smooth out the noise of the last optimizer steps, so the exported model tends to generalise a little better,
at no cost at inference time. The EMA is what validation (and so checkpoint selection) sees, and it
is stored next to the raw weights in each checkpoint as ``ema_state_dict``, with the same keys as
``state_dict``, so whatever reads one can read the other.
"""

from __future__ import annotations

from typing import Any, Sequence

import lightning as L
import torch
from torch import Tensor


class EMACallback(L.Callback):
    """Keeps ``ema = decay_t * ema + (1 - decay_t) * weights`` after every optimizer step.

    ``decay_t = min(decay, (1 + t) / (10 + t))`` after ``t`` updates: early on the EMA follows the weights
    closely, because averaging in the random initialisation would only hold it back. All floating-point
    parameters and buffers are averaged (the model's running statistics included); integer buffers are copied.
    The average lives on the module's device. Under DDP every rank holds the same weights, so every rank computes
    the same average without communicating.
    """

    def __init__(self, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.ema: dict[str, Tensor] | None = None
        self.num_updates = 0
        self._last_step = -1
        self._loaded: tuple[dict[str, Tensor], int] | None = None
        self._raw: dict[str, Tensor] | None = None

    def decay_at(self, t: int) -> float:
        return min(self.decay, (1 + t) / (10 + t))

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.ema = {k: v.detach().clone() for k, v in pl_module.state_dict().items() if v.is_floating_point()}
        self._last_step = trainer.global_step
        if self._loaded is not None:
            self._restore(*self._loaded)
            self._loaded = None

    @torch.no_grad()
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # With gradient accumulation (or a skipped batch) not every batch ends in an optimizer step.
        if self.ema is None or trainer.global_step == self._last_step:
            return
        self._last_step = trainer.global_step
        weight = 1.0 - self.decay_at(self.num_updates)
        current = pl_module.state_dict()
        for k, e in self.ema.items():
            e.lerp_(current[k].detach().to(e.dtype), weight)
        self.num_updates += 1

    def state_dict_for(self, pl_module: L.LightningModule) -> dict[str, Tensor]:
        """The module's ``state_dict()`` with the averaged weights in place of the current ones."""
        raw = self._raw if self._raw is not None else pl_module.state_dict()
        ema = self.ema or {}
        return {k: ema[k].detach().clone() if k in ema else v.detach().clone() for k, v in raw.items()}

    @torch.no_grad()
    def _swap_in(self, pl_module: L.LightningModule) -> None:
        if self.ema is None or self._raw is not None:
            return
        self._raw = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        pl_module.load_state_dict(self.state_dict_for(pl_module))

    @torch.no_grad()
    def _swap_out(self, pl_module: L.LightningModule) -> None:
        if self._raw is not None:
            raw, self._raw = self._raw, None
            pl_module.load_state_dict(raw)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._swap_in(pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning runs ModelCheckpoint's hooks after every other callback's, so the raw weights are back in
        # place before it saves.
        self._swap_out(pl_module)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if self.ema is None:
            return
        if self._raw is not None:  # saved mid-validation: "state_dict" must still be the weights being trained
            checkpoint["state_dict"] = {k: v.detach().clone() for k, v in self._raw.items()}
        checkpoint["ema_state_dict"] = self.state_dict_for(pl_module)
        checkpoint["ema_updates"] = self.num_updates

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if "ema_state_dict" not in checkpoint:
            return  # resuming a run that had no EMA: start one from the restored weights
        state, updates = checkpoint["ema_state_dict"], int(checkpoint.get("ema_updates", 0))
        if self.ema is None:  # restored before fitting starts: wait for on_fit_start to know the device
            self._loaded = (state, updates)
        else:
            self._restore(state, updates)

    @torch.no_grad()
    def _restore(self, state: dict[str, Tensor], updates: int) -> None:
        assert self.ema is not None
        missing = sorted(set(self.ema) - set(state))
        if missing:
            raise KeyError(f"checkpoint's ema_state_dict lacks {len(missing)} entries, e.g. {missing[0]!r}")
        for k, e in self.ema.items():
            e.copy_(state[k])
        self.num_updates = updates


def average_checkpoints(paths: Sequence[str]) -> dict[str, Tensor]:
    """Element-wise mean of the weights of Lightning checkpoints (their EMA weights where they have them).

    Floating-point entries are averaged in float64 and cast back; integer buffers (counters) are taken from the
    last checkpoint, since a mean of counters means nothing.
    """
    if not paths:
        raise ValueError("average_checkpoints needs at least one checkpoint")
    total: dict[str, Tensor] = {}
    last: dict[str, Tensor] = {}
    for i, path in enumerate(paths):
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        state = ckpt.get("ema_state_dict") or ckpt["state_dict"]
        if i > 0 and set(state) != set(last):
            diff = sorted(set(state) ^ set(last))
            raise ValueError(f"{path}: weights differ from {paths[0]}'s (e.g. {diff[0]!r}); cannot average")
        for k, v in state.items():
            if v.is_floating_point():
                total[k] = total[k] + v.double() if k in total else v.double()
        last = state
    return {k: (total[k] / len(paths)).to(v.dtype) if k in total else v for k, v in last.items()}
