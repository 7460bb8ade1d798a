"""When training stops, and how far along its schedule it is, as one value every DDP rank agrees on.

``trainer.max_minutes`` is a *total* budget of training time for an output folder, across resumes: the time
trained so far is stored in every checkpoint, so a run stopped after 40 of 60 minutes and resumed trains 20 more.
Time counts from the start of the first training batch of each run to its end (validation included, start-up
and data screening not).

The learning-rate schedule's progress (0 at the end of warm-up, 1 at the end of the run) is the further along of
the step count and the time budget. It is stored too, and never goes back: resuming with a larger
``--max-minutes`` or ``--max-epochs`` stretches the *rest* of the schedule over the new remainder instead of
making the learning rate jump back up.

Ctrl-C and SIGTERM (from a scheduler) are requests to stop at the next batch boundary: ``last.ckpt`` is written
there (:class:`asr.training.checkpointing.LastCheckpoint`) and training ends. A second Ctrl-C aborts at once, without
saving. Under DDP each rank reads its own clock and signals; one all-reduce per batch makes every rank use the
largest elapsed time and stop at the same batch, so learning rates stay identical and collectives stay paired.
SLURM's SIGUSR1 requeueing (Lightning's own handler) is left alone.

Early stopping (``trainer.early_stopping_patience``) lives here too, because it is one more reason to stop that
must survive a resume: every validation's WER is recorded (step, time, WER) in the checkpointed state, so a
resumed run counts its patience on from where it stopped, and the end of training can tell whether the WER was
still falling (:func:`still_improving`). The WER it reads is already summed over the ranks, so every rank takes
the same decision without a collective.

Patience only counts once the run has started to learn: from the first validation whose WER is below
``start_below_wer`` (100 %: some word right) and once ``min_progress`` of the schedule is behind it. Before that a
flat WER is a model that has not yet left the "all blank" plateau, not one that has stopped improving: on a
small real corpus the Speech Commands recipe stopped after 63 steps at 100 % WER (test accuracy 0 %) where it
reached 75.6 % without early stopping.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any, Callable

import lightning as L
import torch

log = logging.getLogger("asr")

INTERRUPT, SIGTERM = 1, 2  # stop requests, in the order that names the cause when several arrive
STOP_REASONS = {INTERRUPT: "interrupted (Ctrl-C)", SIGTERM: "stopped by SIGTERM"}
TIME_BUDGET, EARLY_STOPPING = "time budget", "early stopping"


class RunControl(L.Callback):
    """Time budget across resumes, graceful Ctrl-C/SIGTERM stops, and a monotonic schedule progress.

    ``stop_reason`` after fitting: None (epochs or steps ran out), :data:`TIME_BUDGET`, :data:`EARLY_STOPPING`,
    or one of :data:`STOP_REASONS`' values.
    """

    def __init__(
        self,
        max_minutes: float | None = None,
        patience: int = 0,
        min_delta: float = 0.0,
        start_below_wer: float | None = 1.0,
        min_progress: float = 0.0,
    ):
        self.budget_s = 60.0 * max_minutes if max_minutes else None
        self.patience, self.min_delta = patience, min_delta
        self.start_below_wer, self.min_progress = start_below_wer, min_progress
        self.validations: list[tuple[int, float, float]] = []  # (global step, seconds trained, val_wer)
        self.best_wer: float | None = None
        self.wait = 0  # validations in a row without an improvement of more than min_delta
        self.elapsed = 0.0  # seconds trained, this output folder's runs together
        self.epochs_done = 0
        self.progress = 0.0
        self.stop_reason: str | None = None
        self._loaded_progress: float | None = None
        self._resumed_at: tuple[int, float] | None = None  # (global step, progress) this run resumed from
        self._anchor: tuple[float, float] | None = None  # (progress, raw progress under this run's caps) there
        self._started: float | None = None
        self._elapsed_at_start = 0.0
        self._request = 0
        self._old_sigint: Any = None

    @property
    def state_key(self) -> str:
        return "RunControl"

    def state_dict(self) -> dict[str, Any]:
        return {
            "elapsed_seconds": self.elapsed,
            "epochs_done": self.epochs_done,
            "progress": self.progress,
            "validations": [list(v) for v in self.validations],
            "best_wer": self.best_wer,
            "wait": self.wait,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.elapsed = float(state["elapsed_seconds"])
        self.epochs_done = int(state["epochs_done"])
        self.progress = self._loaded_progress = float(state["progress"])
        self.validations = [(int(s), float(t), float(w)) for s, t, w in state.get("validations", [])]
        self.best_wer = state.get("best_wer")
        self.wait = int(state.get("wait", 0))

    # --- early stopping -------------------------------------------------------------------------------------
    def record_validation(self, step: int, wer: float, seconds: float | None = None) -> bool:
        """Note a validation's WER (at ``seconds`` trained); True when early stopping says to stop (``patience``
        validations without an improvement of more than ``min_delta`` over the best so far, counted only once
        :meth:`counting` says the run has started to learn)."""
        self.validations.append((step, self.elapsed if seconds is None else seconds, wer))
        if self.best_wer is None or wer < self.best_wer - self.min_delta:
            self.best_wer, self.wait = wer, 0
        elif self.counting():
            self.wait += 1
        return self.patience > 0 and self.wait >= self.patience

    def counting(self) -> bool:
        """Whether patience counts now: some validation's WER fell below ``start_below_wer`` (None: no such
        condition) and the schedule is at least ``min_progress`` along."""
        learned = self.start_below_wer is None or any(w < self.start_below_wer for _, _, w in self.validations)
        return learned and self.progress >= self.min_progress

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        wer = trainer.callback_metrics.get("val_wer")
        if trainer.sanity_checking or wer is None:
            return
        # this rank's clock (informative only: self.elapsed, which the schedule reads, is what the ranks agreed on)
        seconds = self._elapsed_at_start + time.monotonic() - self._started if self._started is not None else None
        if self.record_validation(trainer.global_step, float(wer), seconds) and self.stop_reason is None:
            self.stop_reason = EARLY_STOPPING
            log.info(
                "early stopping: val_wer has not improved by more than %g for %d validations (best %.2f %%)",
                self.min_delta,
                self.wait,
                100 * (self.best_wer or 0.0),
            )
            trainer.should_stop = True

    # --- the schedule ---------------------------------------------------------------------------------------
    def time_fraction(self) -> float:
        return min(1.0, self.elapsed / self.budget_s) if self.budget_s else 0.0

    def schedule_progress(self, step: int, step_fraction: Callable[[int], float]) -> float:
        """Progress in [0, 1] at optimizer step ``step``: the larger of ``step_fraction(step)`` and the time
        fraction, continued without a jump from where a resumed run left off, and never decreasing."""
        raw = min(1.0, max(step_fraction(step), self.time_fraction()))
        if self._anchor is None and self._resumed_at is not None:
            at_step, p0 = self._resumed_at
            start_time = min(1.0, self._elapsed_at_start / self.budget_s) if self.budget_s else 0.0
            self._anchor = (p0, min(1.0, max(step_fraction(at_step), start_time)))
        if self._anchor is not None:
            p0, r0 = self._anchor
            if abs(r0 - p0) > 1e-9:  # the caps changed: spread what is left of the schedule over what is left
                raw = p0 if r0 >= 1.0 else p0 + (1.0 - p0) * max(0.0, raw - r0) / (1.0 - r0)
        self.progress = max(self.progress, min(1.0, raw))
        return self.progress

    # --- hooks ----------------------------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started, self._elapsed_at_start = time.monotonic(), self.elapsed
        if self._loaded_progress is not None:
            # the scheduler's own step count (it also counts batches skipped on every rank)
            configs = getattr(trainer, "lr_scheduler_configs", None)
            step = configs[0].scheduler.last_epoch if configs else trainer.global_step
            self._resumed_at = (step, self._loaded_progress)
        self.stop_reason, self._request = None, 0
        if threading.current_thread() is threading.main_thread():
            self._old_sigint = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self._request:  # the second Ctrl-C: abort now
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self._request = INTERRUPT
        log.warning(
            "Ctrl-C: stopping after this batch and saving last.ckpt (press Ctrl-C again to abort at once, "
            "without saving)"
        )

    def _restore_sigint(self) -> None:
        if self._old_sigint is not None:
            signal.signal(signal.SIGINT, self._old_sigint)
            self._old_sigint = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_sigint()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_sigint()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._check(trainer)
        if not trainer.should_stop and self._last_batch_of_run(trainer, batch_idx):
            # Lightning validates when a run is stopped inside its loop: so the run's final weights are always
            # measured (and can be the exported ones), also when validation runs on a clock
            # (trainer.val_check_minutes) and would otherwise skip the last stretch of the run.
            trainer.should_stop = True

    @staticmethod
    def _validation_due(trainer: L.Trainer) -> bool:
        """Whether Lightning's clock-based validation would run after this batch on this rank."""
        interval = getattr(trainer, "_val_check_time_interval", None)
        if interval is None:
            return False
        last = getattr(trainer, "_last_val_time", None)
        if last is None:
            raise RuntimeError(
                "this Lightning version validates on a clock without the trainer attributes asr "
                "reads to keep ranks in step: leave trainer.val_check_minutes unset"
            )
        return time.monotonic() - last >= interval

    @staticmethod
    def _last_batch_of_run(trainer: L.Trainer, batch_idx: int) -> bool:
        if 0 <= trainer.max_steps <= trainer.global_step:
            return True
        max_epochs = trainer.max_epochs if trainer.max_epochs is not None else -1
        return 0 < max_epochs == trainer.current_epoch + 1 and batch_idx + 1 >= trainer.num_training_batches

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.current.completed >= trainer.num_training_batches:
            self.epochs_done = trainer.current_epoch + 1
        self._check(trainer)

    def _check(self, trainer: L.Trainer) -> None:
        """Agree with the other ranks on the time trained and on any stop request; stop if either says so."""
        assert self._started is not None
        request = max(self._request, SIGTERM if trainer.received_sigterm else 0)
        state = torch.tensor(
            [
                self._elapsed_at_start + time.monotonic() - self._started,
                float(request),
                float(self._validation_due(trainer)),
            ],
            dtype=torch.float64,
            device=trainer.strategy.root_device,
        )
        if trainer.world_size > 1:
            state = trainer.strategy.reduce(state, reduce_op="max")
        elapsed, request, due = state.tolist()
        if due:
            # Lightning's clock-based validation (trainer.val_check_minutes) asks each rank's own clock; ranks
            # that disagreed would wait forever in each other's collectives. Whenever one rank's clock says so,
            # every rank validates after this batch.
            trainer._last_val_time = float("-inf")
        self.elapsed = elapsed
        if request and self.stop_reason is None:
            self.stop_reason = STOP_REASONS[int(request)]
        elif self.budget_s is not None and elapsed >= self.budget_s and self.stop_reason is None:
            self.stop_reason = TIME_BUDGET
            log.info("time budget of %.1f min reached", self.budget_s / 60)
        if self.stop_reason is not None:
            trainer.should_stop = True


def read_state(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """:class:`RunControl`'s state in a Lightning checkpoint (None for checkpoints written before it existed)."""
    return checkpoint.get("callbacks", {}).get("RunControl")


def still_improving(
    validations: list[tuple[int, float, float]], final_step: int, tail: float = 0.2, threshold: float = 0.10
) -> str | None:
    """A warning when validation WER fell by more than ``threshold`` (relative) over the last ``tail`` of the run
    (by optimizer steps), else None.

    The WER at the start of the tail is the last validation at or before ``1 - tail`` of the run (or the first
    validation, in a run validated too rarely to have one there), compared with the last validation.
    """
    if len(validations) < 2 or final_step <= 0:
        return None
    before = [v for v in validations[:-1] if v[0] <= (1 - tail) * final_step]
    start = before[-1] if before else validations[0]
    end = validations[-1]
    if start[2] <= 0 or (start[2] - end[2]) / start[2] <= threshold:
        return None
    return (
        f"validation WER was still falling when training stopped: {100 * start[2]:.2f} % at step {start[0]} "
        f"({100 * start[0] / final_step:.0f} % of the run) -> {100 * end[2]:.2f} % at step {end[0]}, "
        f"{100 * (start[2] - end[2]) / start[2]:.0f} % lower. The model would likely improve with more training: "
        "give it more time (--max-minutes) or more epochs (--max-epochs); --resume with a larger budget "
        "continues this run"
    )
