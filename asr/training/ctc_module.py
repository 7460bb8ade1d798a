"""LightningModule: CTC training of :class:`asr.model.network.ASRModel`, with validation WER/CER.

Augmentation sits between the model's two halves (features -> augmentation -> encoder) so it runs batched on
the model's device; it is off in evaluation mode, and the exported model never contains it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any, Callable, Iterable

import lightning as L
import numpy as np
import torch
from torch import nn

from asr.data.manifest import ManifestError
from asr.data.tokenizer import build_tokenizer, tokenizer_from_dict
from asr.decoding.greedy import greedy_decode
from asr.evaluation.metrics import ErrorRates
from asr.model.features import FeatureConfig
from asr.model.network import ASRModel, ModelDimensions
from asr.training.augment import (
    VTLP,
    AddNoise,
    Babble,
    ColouredNoise,
    InsertPauses,
    RandomGain,
    SilencePad,
    SimulatedRoom,
    SpecAugment,
    SpeedPerturb,
    TelephoneBand,
)
from asr.training.config import AugmentConfig, Config, ConfigError, OptimConfig

log = logging.getLogger("asr")


def step_fraction(step: int, warmup: int, total: int | None) -> float:
    """Share of the post-warm-up steps done at ``step``; 0 when the run has no step cap (``total`` None)."""
    if total is None:
        return 0.0
    return min(1.0, max(0.0, (step - warmup) / max(1, total - warmup)))


def lr_lambda(
    step: int,
    warmup: int,
    total: int | None,
    schedule: str,
    min_ratio: float,
    time_fraction: float = 0.0,
    progress: float | None = None,
) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then cosine decay to ``min_ratio`` at ``total`` steps (or
    constant): the schedule of ``optim.warmup_steps`` (see :func:`fraction_lr` for ``optim.warmup``).

    ``time_fraction`` is the share of a wall-clock budget already spent: the decay follows whichever of steps
    and time is further along, so a run stopped by ``trainer.max_minutes`` still ends at the low learning rate
    instead of being cut off in the middle of its schedule on a slower machine. ``total`` None (no epoch cap)
    leaves time alone in charge. ``progress`` (0..1), when given, replaces both (see
    :meth:`asr.training.run_control.RunControl.schedule_progress`).
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or (total is not None and total <= warmup):
        return 1.0
    if progress is None:
        progress = min(1.0, max(step_fraction(step, warmup, total), time_fraction))
    return cosine(progress, min_ratio)


def cosine(progress: float, min_ratio: float) -> float:
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def fraction_lr(position: float, warmup: float, schedule: str, min_ratio: float) -> float:
    """The learning-rate factor at ``position`` (0..1) of the run, with a warm-up over its first ``warmup``.

    Linear warm-up from 1 % of the peak (not 0, so the first step is not wasted), then cosine decay to
    ``min_ratio`` at the end of the run (or constant). Nothing here counts steps: the same factor at the same
    share of the run, whatever the dataset's size.
    """
    if position < warmup:
        return max(position, 0.01 * warmup) / warmup
    if schedule == "constant":
        return 1.0
    return cosine((position - warmup) / (1.0 - warmup), min_ratio)


class LRSchedule:
    """``LambdaLR``'s factor at each optimizer step, from :class:`asr.training.config.OptimConfig`.

    With ``optim.warmup`` (a fraction) the run's position is the further along of ``step / total`` and the time
    budget's share spent, made monotonic (and continued across resumes) by :class:`asr.training.run_control.RunControl`;
    the warm-up and the cosine are both read off that position. With the older ``optim.warmup_steps`` the
    warm-up counts steps and the position covers the rest of the run (:func:`lr_lambda`).
    """

    def __init__(self, config: OptimConfig, total_steps: Callable[[], int | None], control: Any = None):
        self.config, self.total_steps, self.control = config, total_steps, control

    def position(self, step: int) -> float:
        """Where the schedule is at ``step``: the run's position (warm-up fraction) or the post-warm-up one."""
        c, total = self.config, self.total_steps()
        if c.warmup_fraction is not None:
            by_steps: Callable[[int], float] = lambda s: min(1.0, s / total) if total else 0.0  # noqa: E731
        else:
            by_steps = lambda s: step_fraction(s, c.warmup_steps or 0, total)  # noqa: E731
            if step < (c.warmup_steps or 0):
                return 0.0
        if self.control is None:
            return by_steps(step)
        return self.control.schedule_progress(step, by_steps)

    def __call__(self, step: int) -> float:
        c = self.config
        if c.warmup_fraction is not None:
            return fraction_lr(self.position(step), c.warmup_fraction, c.schedule, c.min_lr_ratio)
        warmup = c.warmup_steps or 0
        return lr_lambda(step, warmup, self.total_steps(), c.schedule, c.min_lr_ratio, progress=self.position(step))


def ctc_feasible(targets: torch.Tensor, target_lengths: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """(B,) bool: whether each padded target fits its number of output frames under CTC (one frame per token
    plus a blank between repeated tokens); an infeasible one has infinite loss."""
    same = targets[:, 1:] == targets[:, :-1]
    inside = torch.arange(1, targets.shape[1], device=targets.device)[None, :] < target_lengths[:, None]
    need = target_lengths + (same & inside).sum(1)
    return need <= frames


def recording_augmentations(aug: AugmentConfig, sample_rate: int, seed: int) -> tuple[list[nn.Module], list[nn.Module]]:
    """The augmentations of real recordings that ``aug`` turns on (prob > 0), in the order they act: those before
    the noise manifest's noise (pauses, silence padding, room, babble, coloured noise) and those after it (gain,
    telephone line)."""
    before: list[nn.Module] = []
    after: list[nn.Module] = []
    if aug.pause_prob > 0:
        before.append(
            InsertPauses(aug.pause_prob, aug.pause_count, aug.pause_seconds, sample_rate=sample_rate, generator=seed)
        )
    if aug.silence_prob > 0:
        before.append(SilencePad(aug.silence_prob, aug.silence_seconds, sample_rate, generator=seed + 1))
    if aug.reverb_prob > 0:
        before.append(
            SimulatedRoom(aug.reverb_prob, aug.reverb_rt60, aug.reverb_drr_db, sample_rate, generator=seed + 2)
        )
    if aug.babble_prob > 0:
        before.append(Babble(aug.babble_prob, aug.babble_snr_db, aug.babble_voices, generator=seed + 3))
    if aug.coloured_noise_prob > 0:
        before.append(
            ColouredNoise(
                aug.coloured_noise_prob, aug.coloured_noise_snr_db, aug.coloured_noise_exponent, generator=seed + 4
            )
        )
    if aug.gain_prob > 0:
        after.append(RandomGain(aug.gain_prob, aug.gain_db, generator=seed + 5))
    if aug.telephone_prob > 0:
        after.append(TelephoneBand(aug.telephone_prob, sample_rate, generator=seed + 6))
    return before, after


class CTCModule(L.LightningModule):
    def __init__(
        self,
        features: dict[str, Any],
        model: dict[str, Any],
        tokenizer: dict[str, Any],
        optim: dict[str, Any],
        augment: dict[str, Any],
        seed: int = 0,
    ):
        super().__init__()
        # Plain dicts only: Lightning checkpoints then load with weights_only=True.
        self.save_hyperparameters()
        self.tokenizer = tokenizer_from_dict(tokenizer)
        self.model = ASRModel(ModelDimensions(**model), FeatureConfig(**features))
        self.optim_config = OptimConfig(**optim)
        aug = AugmentConfig(**augment)
        self.spec_augment = (
            SpecAugment(
                freq_masks=aug.freq_masks,
                freq_width=aug.freq_width,
                time_masks=aug.time_masks,
                time_width=aug.time_width,
                generator=seed,
            )
            if aug.spec_augment
            else None
        )
        self.speed_perturb = SpeedPerturb(aug.speed_factors, generator=seed + 1) if aug.speed_perturb else None
        fc = self.model.feature_config
        self.vtlp = VTLP(fc.sample_rate, fc.n_fft, aug.vtlp_factors, generator=seed + 3) if aug.vtlp else None
        self.add_noise = (
            AddNoise(
                aug.noise_manifest,
                snr_db=tuple(aug.noise_snr_db),
                prob=aug.noise_prob,
                sample_rate=self.model.sample_rate,
                generator=seed + 2,
            )
            if aug.noise_manifest
            else None
        )
        # what real recordings carry: before the noise manifest's noise (so that noise covers pads and pauses)
        # and after it (the recording level and the line come last)
        before, after = recording_augmentations(aug, self.model.sample_rate, seed + 10)
        self.before_noise, self.after_noise = nn.ModuleList(before), nn.ModuleList(after)
        self.ctc = nn.CTCLoss(blank=self.tokenizer.blank_id, reduction="sum", zero_infinity=True)
        self.skipped_batches = 0
        self.skipped_utterances = 0
        self.infeasible_utterances = 0  # transcripts too long for their (speed-perturbed) audio, left out of the loss
        self._first_skipped: str | None = None
        self._skip_step = False  # the last training_step's batch is to be skipped on every rank
        self._total_steps: int | None = None  # optimizer steps the schedule spans (None: no step or epoch cap)
        self._epoch_steps = 0  # training steps that produced a loss this epoch
        self._epoch_empty_batches = 0  # batches with no readable audio on this rank this epoch
        self._val_rates = ErrorRates()
        self._val_examples: list[tuple[str, str]] = []
        self._val_skipped: list[str] = []  # this validation run's unreadable utterances, on this rank
        from asr.training.finetune import frozen_parameters

        frozen = set(frozen_parameters(self.model, self.optim_config.freeze_layers))
        self._frozen = [p for n, p in self.model.named_parameters() if n in frozen]
        self._thaw_logged = False

    @classmethod
    def from_config(cls, config: Config, train_texts: Iterable[str] = ()) -> "CTCModule":
        """The module a training config describes (the vocabulary size comes from the tokenizer).

        ``train_texts`` are the training transcripts a ``tokenizer.type: bpe`` config learns its pieces from.
        """
        try:
            tokenizer = build_tokenizer(config.tokenizer, train_texts)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        dims = dataclasses.replace(config.model, vocab_size=len(tokenizer))
        return cls(
            features=dataclasses.asdict(config.features),
            model=dataclasses.asdict(dims),
            tokenizer=tokenizer.to_dict(),
            optim=dataclasses.asdict(config.optim),
            augment=dataclasses.asdict(config.augment),
            seed=config.trainer.seed,
        )

    # --- training -------------------------------------------------------------------------------------------
    def _augment_audio(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.speed_perturb is not None:
            audio, lengths = self.speed_perturb(audio, lengths)
        for module in self.before_noise:
            out = module(audio, lengths)
            audio, lengths = out if isinstance(out, tuple) else (out, lengths)
        if self.add_noise is not None:
            audio = self.add_noise(audio, lengths)
        for module in self.after_noise:
            audio = module(audio, lengths)
        return audio, lengths

    def _note_skipped(self, batch: dict[str, Any], validation: bool = False) -> None:
        for s in batch["skipped"]:
            self.skipped_utterances += 1
            if validation:
                self._val_skipped.append(str(s))
            elif self._first_skipped is None:
                self._first_skipped = str(s)
            if self.skipped_utterances <= 20:
                log.warning("skipped %s", s)

    def ctc_loss(
        self, log_probs: torch.Tensor, out_lens: torch.Tensor, targets: torch.Tensor, target_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, int]:
        """Mean per-utterance CTC loss over the utterances whose transcript fits their frames, and how many did
        not (``zero_infinity`` alone would count those as a loss of 0 without a word)."""
        feasible = ctc_feasible(targets, target_lengths, out_lens)
        losses = nn.functional.ctc_loss(
            log_probs.transpose(0, 1),
            targets,
            out_lens,
            target_lengths,
            blank=self.tokenizer.blank_id,
            reduction="none",
            zero_infinity=True,
        )
        kept = int(feasible.sum())
        return (losses * feasible).sum() / max(kept, 1), len(feasible) - kept

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        self._note_skipped(batch)
        loss, usable = None, batch["audio"].shape[0] > 0
        if usable:
            audio, lengths = self._augment_audio(batch["audio"], batch["audio_lengths"])
            mel_fb = self.vtlp(self.model.features.mel_fb, audio.shape[0]) if self.vtlp is not None else None
            feats, feat_lens = self.model.features(audio, lengths, mel_fb)
            if self.spec_augment is not None:
                feats = self.spec_augment(feats, feat_lens)
            log_probs, out_lens = self.model.encoder(feats, feat_lens)
            loss, infeasible = self.ctc_loss(log_probs, out_lens, batch["targets"], batch["target_lengths"])
            if infeasible:
                self.infeasible_utterances += infeasible
                log.warning(
                    "%d utterance(s) in batch %d too short for their transcript after augmentation; left out "
                    "of the loss (%d so far)",
                    infeasible,
                    batch_idx,
                    self.infeasible_utterances,
                )
            usable = infeasible < log_probs.shape[0] and bool(torch.isfinite(loss))
            if not usable and infeasible < log_probs.shape[0]:
                log.warning(
                    "non-finite loss in batch %d (files: %s); skipped", batch_idx, ", ".join(batch["paths"][:3])
                )
        else:
            self._epoch_empty_batches += 1
        # Every rank takes part in this collective, even one whose batch could not be read, so all skip together
        # (a rank returning early would pair its next collective with this one on the others).
        bad = torch.tensor(float(not usable), device=self.device)
        if self.trainer.world_size > 1:
            bad = self.trainer.strategy.reduce(bad, reduce_op="max")
        self._skip_step = bad.item() > 0
        if self._skip_step:
            self.skipped_batches += 1
            if self.skipped_batches <= 20 or self.skipped_batches % 100 == 0:
                log.warning(
                    "batch %d skipped on every rank (%d so far)%s",
                    batch_idx,
                    self.skipped_batches,
                    "" if usable else ": nothing usable in this rank's batch",
                )
            # Not None: Lightning refuses that under DDP. A zero loss reaching every parameter keeps DDP's gradient
            # all-reduce paired on all ranks; optimizer_step then leaves the weights and optimizer state alone.
            zero = torch.zeros((), device=self.device)
            return sum((p.sum() for p in self.parameters() if p.requires_grad), zero) * 0.0
        assert loss is not None
        self._epoch_steps += 1
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=batch["audio"].shape[0])
        self.log("skipped_batches", float(self.skipped_batches), reduce_fx="max")
        self.log("infeasible_utterances", float(self.infeasible_utterances), reduce_fx="max")
        return loss

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        if optimizer_closure is None:
            optimizer.step()
            return
        # Lightning's way to skip a step is to run the closure (training_step and backward, on every rank) without
        # stepping the optimizer; whether to skip is known only once training_step has run, so it runs first.
        loss = optimizer_closure()
        if self._skip_step:
            return
        optimizer.step(closure=lambda: loss)

    def frozen_now(self) -> bool:
        """Whether ``optim.freeze_layers`` holds at this step (a pure function of the step, so resumes agree)."""
        steps = self.optim_config.freeze_steps
        return bool(self._frozen) and (steps < 0 or self.global_step < steps)

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        # Dropping the frozen layers' gradients makes AdamW skip them (no update, no weight decay, no moments);
        # DDP has already averaged them, so every rank agrees.
        if self.frozen_now():
            for p in self._frozen:
                p.grad = None
        elif self._frozen and not self._thaw_logged:
            self._thaw_logged = True
            log.info(
                "step %d: the %d frozen parameter tensors (optim.freeze_layers=%d) train from now on",
                self.global_step,
                len(self._frozen),
                self.optim_config.freeze_layers,
            )

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Every random draw of a batch (augmentation generators, dropout) is seeded from (seed, rank, epoch, batch),
        # a pure function of the position in training: a resumed run draws exactly what an uninterrupted one
        # would, on every rank, with no generator state to carry in checkpoints.
        seeds = np.random.SeedSequence([self.hparams.seed, self.global_rank, self.current_epoch, batch_idx])
        recording = [*self.before_noise, *self.after_noise]
        # more words of one SeedSequence: the first five are the same as before these augmentations existed
        states = seeds.generate_state(5 + len(recording), dtype=np.uint64) >> np.uint64(1)
        torch.manual_seed(int(states[0]))
        for aug, s in zip((self.spec_augment, self.speed_perturb, self.add_noise, self.vtlp, *recording), states[1:]):
            if aug is not None:
                aug.generator.manual_seed(int(s))

    def on_train_start(self) -> None:
        # The schedule's length is read here, not in configure_optimizers: asking Lightning for it there builds the
        # train DataLoader before a resumed checkpoint's loader state is restored, and Lightning then never hands
        # that state over (the epoch would restart from its first batch). Infinite without an epoch or step cap.
        estimated = self.trainer.estimated_stepping_batches
        self._total_steps = int(estimated) if math.isfinite(estimated) else None
        # Resumed mid-epoch: the batches before the checkpoint trained (or the epoch would have failed there).
        self._epoch_steps = self.trainer.fit_loop.epoch_loop.batch_progress.current.completed

    def on_train_epoch_start(self) -> None:
        self._epoch_steps = self._epoch_empty_batches = 0
        loader = self.trainer.train_dataloader
        for source in (getattr(loader, "batch_sampler", None), getattr(loader, "dataset", None)):
            if hasattr(source, "set_epoch"):  # the duration sampler, or a shard stream (asr.data.shard_stream)
                source.set_epoch(self.current_epoch)

    def _no_step_error(self) -> ManifestError:
        e, empty = self.current_epoch, self._epoch_empty_batches
        if empty:
            why = (
                f"{empty} of its batches had no readable audio (e.g. {self._first_skipped}); check that the "
                "training manifest's audio files exist and decode"
            )
        else:
            why = "every batch had a non-finite loss; lower optim.lr or check the data"
        return ManifestError(f"epoch {e} trained no step: {why}")

    def on_train_epoch_end(self) -> None:
        trainer = self.trainer
        finished = trainer.fit_loop.epoch_loop.batch_progress.current.completed >= trainer.num_training_batches
        if finished and self._epoch_steps == 0:  # validation did not run this epoch to catch it
            raise self._no_step_error()

    # --- validation -----------------------------------------------------------------------------------------
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._note_skipped(batch, validation=True)
        if batch["audio"].shape[0] == 0:
            return
        log_probs, out_lens = self.model(batch["audio"], batch["audio_lengths"])
        loss = self.ctc(log_probs.transpose(0, 1), batch["targets"], out_lens, batch["target_lengths"])
        self.log("val_loss", loss / log_probs.shape[0], batch_size=log_probs.shape[0], sync_dist=True)
        for ref, hyp in zip(batch["texts"], greedy_decode(log_probs, out_lens, self.tokenizer)):
            self._val_rates.add(ref, hyp)
            if len(self._val_examples) < 3:
                self._val_examples.append((ref, hyp))

    def on_validation_epoch_end(self) -> None:
        r = self._val_rates
        counts = torch.tensor(
            [r.words.total, r.words.reference_length, r.chars.total, r.chars.reference_length, self._epoch_steps],
            dtype=torch.float64,
            device=self.device,
        )
        if self.trainer.world_size > 1:
            counts = self.trainer.strategy.reduce(counts, reduce_op="sum")
        # Fail before val_wer is logged, so ModelCheckpoint never keeps a "best" model that learnt nothing or was
        # measured on nothing.
        if not self.trainer.sanity_checking and counts[4] == 0:
            raise self._no_step_error()
        if counts[1] == 0:
            unreadable = (
                f"; {len(self._val_skipped)} utterances could not be read, e.g. {self._val_skipped[0]}"
                if self._val_skipped
                else "; every transcript is empty"
            )
            raise ManifestError(
                f"validation at epoch {self.current_epoch} had no reference words{unreadable}. A "
                "WER over nothing is not 0 %: check the validation manifest"
            )
        wer = (counts[0] / counts[1].clamp(min=1)).item()
        cer = (counts[2] / counts[3].clamp(min=1)).item()
        self.log("val_wer", wer, prog_bar=True, sync_dist=False)
        self.log("val_cer", cer, sync_dist=False)
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            for ref, hyp in self._val_examples:
                log.info("epoch %d  ref: %s\n%s  hyp: %s", self.current_epoch, ref, " " * 9, hyp)
        self._val_rates = ErrorRates()
        self._val_examples = []
        self._val_skipped = []

    # --- optimisation ---------------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        c = self.optim_config
        decay = [p for n, p in self.named_parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for n, p in self.named_parameters() if p.requires_grad and p.dim() < 2]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": c.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=c.lr,
            betas=tuple(c.betas),
        )
        control = None
        if self.trainer is not None:
            from asr.training.run_control import RunControl

            control = next((cb for cb in self.trainer.callbacks if isinstance(cb, RunControl)), None)
        # Wrapped in a lambda: LambdaLR would store a callable object's attributes (this config, the callback) in
        # every checkpoint.
        self.lr_schedule = LRSchedule(c, lambda: self._total_steps, control)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: self.lr_schedule(step))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
