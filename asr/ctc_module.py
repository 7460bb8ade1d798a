"""LightningModule: CTC training of :class:`asr.model.ASRModel`, with validation WER/CER.

Augmentation sits between the model's two halves (features -> augmentation -> encoder) so it runs batched on
the model's device; it is off in evaluation mode, and the exported model never contains it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any, Iterable

import lightning as L
from lightning.pytorch.callbacks import Timer
import torch
from torch import nn

from asr.augment import VTLP, AddNoise, SpecAugment, SpeedPerturb
from asr.config import AugmentConfig, Config, ConfigError, OptimConfig
from asr.decoding import greedy_decode
from asr.features import FeatureConfig
from asr.metrics import ErrorRates
from asr.model import ASRModel, ModelDimensions
from asr.tokenizer import build_tokenizer, tokenizer_from_dict

log = logging.getLogger("asr")


def lr_lambda(step: int, warmup: int, total: int, schedule: str, min_ratio: float,
              time_fraction: float = 0.0) -> float:
    """Linear warm-up to 1, then cosine decay to ``min_ratio`` at ``total`` steps (or constant).

    ``time_fraction`` is the share of a wall-clock budget already spent: the decay follows whichever of steps
    and time is further along, so a run stopped by ``trainer.max_minutes`` still ends at the low learning rate
    instead of being cut off in the middle of its schedule on a slower machine.
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    progress = min(1.0, max((step - warmup) / max(1, total - warmup), time_fraction))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class CTCModule(L.LightningModule):
    def __init__(self, features: dict[str, Any], model: dict[str, Any], tokenizer: dict[str, Any],
                 optim: dict[str, Any], augment: dict[str, Any], seed: int = 0):
        super().__init__()
        # Plain dicts only: Lightning checkpoints then load with weights_only=True.
        self.save_hyperparameters()
        self.tokenizer = tokenizer_from_dict(tokenizer)
        self.model = ASRModel(ModelDimensions(**model), FeatureConfig(**features))
        self.optim_config = OptimConfig(**optim)
        aug = AugmentConfig(**augment)
        self.spec_augment = (SpecAugment(freq_masks=aug.freq_masks, freq_width=aug.freq_width,
                                         time_masks=aug.time_masks, time_width=aug.time_width, generator=seed)
                             if aug.spec_augment else None)
        self.speed_perturb = SpeedPerturb(aug.speed_factors, generator=seed + 1) if aug.speed_perturb else None
        fc = self.model.feature_config
        self.vtlp = (VTLP(fc.sample_rate, fc.n_fft, aug.vtlp_factors, generator=seed + 3) if aug.vtlp else None)
        self.add_noise = (AddNoise(aug.noise_manifest, snr_db=tuple(aug.noise_snr_db), prob=aug.noise_prob,
                                   sample_rate=self.model.sample_rate, generator=seed + 2)
                          if aug.noise_manifest else None)
        self.ctc = nn.CTCLoss(blank=self.tokenizer.blank_id, reduction="sum", zero_infinity=True)
        self.skipped_batches = 0
        self.skipped_utterances = 0
        self._val_rates = ErrorRates()
        self._val_examples: list[tuple[str, str]] = []

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
        return cls(features=dataclasses.asdict(config.features), model=dataclasses.asdict(dims),
                   tokenizer=tokenizer.to_dict(), optim=dataclasses.asdict(config.optim),
                   augment=dataclasses.asdict(config.augment), seed=config.trainer.seed)

    # --- training -------------------------------------------------------------------------------------------
    def _augment_audio(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.speed_perturb is not None:
            audio, lengths = self.speed_perturb(audio, lengths)
        if self.add_noise is not None:
            audio = self.add_noise(audio, lengths)
        return audio, lengths

    def _note_skipped(self, batch: dict[str, Any]) -> None:
        for s in batch["skipped"]:
            self.skipped_utterances += 1
            if self.skipped_utterances <= 20:
                log.warning("skipped %s", s)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        self._note_skipped(batch)
        if batch["audio"].shape[0] == 0:
            return None
        audio, lengths = self._augment_audio(batch["audio"], batch["audio_lengths"])
        mel_fb = self.vtlp(self.model.features.mel_fb, audio.shape[0]) if self.vtlp is not None else None
        feats, feat_lens = self.model.features(audio, lengths, mel_fb)
        if self.spec_augment is not None:
            feats = self.spec_augment(feats, feat_lens)
        log_probs, out_lens = self.model.encoder(feats, feat_lens)
        loss = self.ctc(log_probs.transpose(0, 1), batch["targets"], out_lens, batch["target_lengths"])
        loss = loss / log_probs.shape[0]
        bad = torch.tensor(float(not torch.isfinite(loss)), device=loss.device)
        if self.trainer.world_size > 1:  # every rank must agree to skip, or DDP would wait forever
            bad = self.trainer.strategy.reduce(bad, reduce_op="max")
        if bad.item() > 0:
            self.skipped_batches += 1
            log.warning("non-finite loss in batch %d (files: %s); skipped, %d so far",
                        batch_idx, ", ".join(batch["paths"][:3]), self.skipped_batches)
            return None
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=log_probs.shape[0])
        self.log("skipped_batches", float(self.skipped_batches), reduce_fx="max")
        return loss

    def on_fit_start(self) -> None:
        # Each DDP rank draws its own augmentation, reproducibly.
        seed = self.hparams.seed + 1000 * self.global_rank
        for i, aug in enumerate((self.spec_augment, self.speed_perturb, self.add_noise, self.vtlp)):
            if aug is not None:
                aug.generator.manual_seed(seed + i)

    def on_train_epoch_start(self) -> None:
        sampler = getattr(self.trainer.train_dataloader, "batch_sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.current_epoch)

    # --- validation -----------------------------------------------------------------------------------------
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._note_skipped(batch)
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
        counts = torch.tensor([r.words.total, r.words.reference_length, r.chars.total, r.chars.reference_length],
                              dtype=torch.float64, device=self.device)
        if self.trainer.world_size > 1:
            counts = self.trainer.strategy.reduce(counts, reduce_op="sum")
        wer = (counts[0] / counts[1].clamp(min=1)).item()
        cer = (counts[2] / counts[3].clamp(min=1)).item()
        self.log("val_wer", wer, prog_bar=True, sync_dist=False)
        self.log("val_cer", cer, sync_dist=False)
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            for ref, hyp in self._val_examples:
                log.info("epoch %d  ref: %s\n%s  hyp: %s", self.current_epoch, ref, " " * 9, hyp)
        self._val_rates = ErrorRates()
        self._val_examples = []

    # --- optimisation ---------------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        c = self.optim_config
        decay = [p for n, p in self.named_parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for n, p in self.named_parameters() if p.requires_grad and p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": c.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=c.lr, betas=tuple(c.betas))
        total = int(self.trainer.estimated_stepping_batches) if self.trainer else 0
        timer = next((cb for cb in self.trainer.callbacks if isinstance(cb, Timer)), None) if self.trainer else None

        def time_fraction() -> float:
            if timer is None:
                return 0.0
            elapsed, left = timer.time_elapsed("train"), timer.time_remaining("train")
            return elapsed / (elapsed + left) if left is not None and elapsed + left > 0 else 0.0

        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_lambda(s, c.warmup_steps, total, c.schedule, c.min_lr_ratio, time_fraction()))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
