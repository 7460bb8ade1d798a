"""`asr train`: configure Lightning, fit, and export the best weights as one self-contained ``model.pt``."""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from asr.data.dataset import Skipped
from asr.data.manifest import read_manifest
from asr.data.shards import read_shard_manifest
from asr.model.card import write_card_file
from asr.model.file import save_model
from asr.training.batch_sizing import BatchChoice, longest_training_seconds
from asr.training.callbacks import AutoBatch, EpochLog
from asr.training.checkpointing import AtomicCheckpointIO, LastCheckpoint
from asr.training.config import Config, ConfigError, dump_config
from asr.training.ctc_module import CTCModule
from asr.training.datamodule import ASRDataModule, load_split
from asr.training.feature_stats import estimate_global_stats
from asr.training.model_card import card_name_of, model_card, validation_confidence
from asr.training.precision import resolve_precision
from asr.training.provenance import git_commit
from asr.training.run_control import EARLY_STOPPING, STOP_REASONS, TIME_BUDGET, RunControl, read_state, still_improving
from asr.training.run_folder import launch_rank, prepare_output_dir, read_checkpoint
from asr.training.training_log import MetricsLog, TensorBoardLog

log = logging.getLogger("asr")


class TrainingStopped(Exception):
    """Training was stopped by Ctrl-C or SIGTERM; ``last.ckpt`` holds where it stopped."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def write_skipped(path: Path, skipped: list[Skipped]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for s in skipped:
            f.write(f"{s}\n")


def check_not_finished(
    ckpt_path: str, max_epochs: int, max_minutes: float | None, max_steps: int = -1, patience: int = 0
) -> dict:
    """Refuse to resume a run that has nothing left to do under the given caps, saying which cap to raise;
    returns the checkpoint."""
    checkpoint = read_checkpoint(ckpt_path)
    state = read_state(checkpoint)
    if state is None:
        return checkpoint
    epochs, minutes = int(state["epochs_done"]), float(state["elapsed_seconds"]) / 60
    steps_done = 0 <= max_steps <= int(checkpoint.get("global_step", 0))
    if (0 <= max_epochs <= epochs) or (max_minutes is not None and minutes >= max_minutes) or steps_done:
        budget = f" of the {max_minutes:g} min budget" if max_minutes is not None else ""
        raise ConfigError(
            f"{ckpt_path}: already trained {epochs} epochs / {minutes:.1f} min{budget}; nothing to "
            f"do (trainer.max_epochs={max_epochs}); pass a larger --max-epochs or --max-minutes to "
            "train on"
        )
    wait = int(state.get("wait", 0))
    if 0 < patience <= wait:
        raise ConfigError(
            f"{ckpt_path}: this run stopped early: val_wer did not improve for {wait} validations "
            f"(best {100 * float(state.get('best_wer') or 0):.2f} %); nothing to do with "
            f"trainer.early_stopping_patience={patience}: raise it, or set it to 0, to train on"
        )
    return checkpoint


def stop_reason(control: RunControl, trainer: L.Trainer, max_epochs: int, max_steps: int) -> str:
    """Why a finished (not interrupted) run stopped, in words."""
    if control.stop_reason == TIME_BUDGET:
        return f"time budget (trainer.max_minutes={control.budget_s / 60:g})" if control.budget_s else TIME_BUDGET
    if control.stop_reason == EARLY_STOPPING:
        return (
            f"early stopping (no val_wer improvement for {control.wait} validations, "
            f"trainer.early_stopping_patience={control.patience})"
        )
    if 0 <= max_steps <= trainer.global_step:
        return f"max_steps (trainer.max_steps={max_steps})"
    if control.stop_reason:
        return control.stop_reason
    return f"epoch cap (trainer.max_epochs={max_epochs})"


def describe_tokenizer(tokenizer, out: Path) -> None:
    """Log the vocabulary; a sentencepiece model is also written out (tokenizer.model) for LM and lexicon tools."""
    if hasattr(tokenizer, "model_proto"):
        if launch_rank() == 0:
            (out / "tokenizer.model").write_bytes(tokenizer.model_proto)
        log.info(
            "tokenizer: %d sentencepiece pieces + blank, written to %s", len(tokenizer) - 1, out / "tokenizer.model"
        )
    else:
        log.info("tokenizer: %d characters + blank", len(tokenizer) - 1)


def train(
    config: Config,
    train_manifest: str,
    val_manifest: str,
    output_dir: str | os.PathLike,
    resume: str | bool = False,
    callbacks: Sequence[L.Callback] = (),
    init_from: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Path:
    """Train a model and write ``output_dir/model.pt``; returns that path.

    ``callbacks`` are added to Lightning's (tests use this to watch what each rank sees). ``init_from``: a
    model file to start from (:mod:`asr.training.finetune`); ignored when resuming, whose checkpoint holds the weights.
    A folder that holds a run already is refused unless ``resume`` (continue it) or ``overwrite`` (its files are
    removed first): :mod:`asr.training.run_folder`.
    """
    out = Path(output_dir)
    prepare_output_dir(out, bool(resume), overwrite)
    t = config.trainer
    ckpt_dir = out / "checkpoints"
    ckpt_path, checkpoint = None, None
    if resume:
        ckpt_path = str(resume) if isinstance(resume, str) else str(ckpt_dir / "last.ckpt")
        if not os.path.exists(ckpt_path):
            raise FileNotFoundError(f"{ckpt_path}: no checkpoint to resume from")
        checkpoint = check_not_finished(ckpt_path, t.max_epochs, t.max_minutes, t.max_steps, t.early_stopping_patience)
        log.info("resuming from %s", ckpt_path)
    L.seed_everything(config.trainer.seed, workers=True, verbose=False)
    # Word pieces (tokenizer.type: bpe) are learned from the training transcripts before anything else.
    read_train = read_shard_manifest if config.data.train_shards else read_manifest  # (NeMo's per-shard pattern too)
    texts = [u.text for u in read_train(train_manifest, strict=False)] if config.tokenizer.type == "bpe" else []
    module = CTCModule.from_config(config, train_texts=texts)
    describe_tokenizer(module.tokenizer, out)
    init_report = None
    if init_from is not None and checkpoint is None:
        from asr.training.finetune import init_from as load_weights

        init_report = load_weights(module.model, module.tokenizer, config, init_from)
    elif init_from is not None:
        log.info("--init-from %s not applied: the resumed checkpoint holds the weights", init_from)
    tokenizer, dims, sr = module.tokenizer, module.model.dims, module.model.sample_rate

    def output_frames(durations: Sequence[float]) -> list[int]:
        samples = torch.tensor([int(round(d * sr)) for d in durations], dtype=torch.long)
        return module.model.output_lengths(samples).tolist()

    # Speed perturbation can make audio this much shorter; a transcript must fit the shortest version.
    fastest = max(config.augment.speed_factors) if config.augment.speed_perturb else 1.0
    shards = config.data.train_shards
    train_utts, train_skipped = load_split(
        train_manifest,
        tokenizer,
        output_frames,
        config.data.max_duration,
        fastest_speed=max(fastest, 1.0),
        sharded=bool(shards),
    )
    if shards:
        from asr.data.shard_stream import check_shards

        check_shards(shards, train_utts)  # a wrong brace range or a missing local shard: an error now, not later
    val_utts, val_skipped = load_split(val_manifest, tokenizer, output_frames, None)
    for name, utts, skipped in (("train", train_utts, train_skipped), ("val", val_utts, val_skipped)):
        hours = sum(u.duration for u in utts) / 3600
        log.info("%s: %d utterances, %.2f h; %d skipped", name, len(utts), hours, len(skipped))
        if skipped and launch_rank() == 0:
            write_skipped(out / f"skipped_{name}.txt", skipped)
            for s in skipped[:5]:
                log.warning("%s: skipped %s", name, s)
            log.warning(
                "%s: %d utterances skipped in all; the list is in %s", name, len(skipped), out / f"skipped_{name}.txt"
            )

    if config.features.normalize == "global" and init_report is None:  # a source model brings its own
        estimate_global_stats(module, train_utts, seed=config.trainer.seed, shards=shards)
    if launch_rank() == 0:  # the other ranks' copies would race rank 0's check of the folder
        dump_config(dataclasses.replace(config, model=dims), out / "config.yaml")

    data_config = copy.deepcopy(config.data)  # max_batch_seconds: auto is resolved into this copy
    auto_batch = None
    if data_config.max_batch_seconds == "auto":
        speeds = config.augment.speed_factors if config.augment.speed_perturb else None
        stored = (checkpoint or {}).get("callbacks", {}).get("AutoBatch") or None
        auto_batch = AutoBatch(
            data_config,
            longest_training_seconds([u.duration for u in train_utts], speeds),
            resolve_precision(t.precision, t.accelerator),
            stored,
            epoch_seconds=sum(u.duration for u in train_utts),
        )
    data = ASRDataModule(train_utts, val_utts, tokenizer, sr, data_config, seed=t.seed, train_shards=shards)
    # Top-k by val_wer only; last.ckpt is LastCheckpoint's, written at every epoch end and every stop.
    # Saved when a validation ends, wherever in the epoch it falls (trainer.val_check_minutes).
    ckpt = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="epoch{epoch:03d}-step{step:06d}-wer{val_wer:.4f}",
        monitor="val_wer",
        mode="min",
        save_top_k=max(3, t.average_checkpoints),
        save_last=False,
        auto_insert_metric_name=False,
        save_on_train_epoch_end=False,
    )
    control = RunControl(
        t.max_minutes,
        t.early_stopping_patience,
        t.early_stopping_min_delta,
        start_below_wer=t.early_stopping_below_wer,
        min_progress=t.early_stopping_min_progress,
    )
    all_callbacks: list[L.Callback] = [
        control,
        ckpt,
        LastCheckpoint(ckpt_dir),
        LearningRateMonitor(logging_interval="step"),
        EpochLog(sr),
        *callbacks,
    ]
    if auto_batch is not None:
        all_callbacks.insert(0, auto_batch)
    if t.ema_decay > 0:
        from asr.training.averaging import EMACallback

        all_callbacks.append(EMACallback(t.ema_decay))

    # Reports: curves.png from the CSV log at validation ends (when cheap) and at the end; never fails training.
    from asr.training.curves import TrainingCurves

    all_callbacks.append(TrainingCurves(out / "curves.png", clock=lambda: control.elapsed))
    precision = resolve_precision(t.precision, t.accelerator)
    log.info("precision %s%s", precision, " (trainer.precision: auto)" if t.precision == "auto" else "")
    trainer = L.Trainer(
        default_root_dir=out,
        max_epochs=t.max_epochs,
        max_steps=t.max_steps,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=precision,
        plugins=[AtomicCheckpointIO()],
        gradient_clip_val=config.optim.grad_clip or None,
        accumulate_grad_batches=t.accumulate_grad_batches,
        log_every_n_steps=t.log_every_n_steps,
        check_val_every_n_epoch=t.check_val_every_n_epoch,
        val_check_interval=timedelta(minutes=t.val_check_minutes) if t.val_check_minutes else 1.0,
        callbacks=all_callbacks,
        enable_progress_bar=t.progress_bar and sys.stderr.isatty(),
        use_distributed_sampler=False,
        logger=[
            TensorBoardLog(out / "logs", resume=checkpoint is not None),
            MetricsLog(out / "logs" / "csv" / "metrics.csv", resume=checkpoint is not None),
        ],
        num_sanity_val_steps=0,
    )
    started = time.time()
    try:
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException:
        control.stop_reason = STOP_REASONS[2]
    minutes = (time.time() - started) / 60
    if control.stop_reason in STOP_REASONS.values():
        last = ckpt_dir / "last.ckpt"
        raise TrainingStopped(
            f"{control.stop_reason} after {control.epochs_done} full epochs, at step "
            f"{trainer.global_step} ({control.elapsed / 60:.1f} min trained); {last} holds it: "
            "continue with --resume",
            130 if control.stop_reason == STOP_REASONS[1] else 143,
        )

    reason = stop_reason(control, trainer, t.max_epochs, t.max_steps)
    schedule = getattr(module, "lr_schedule", None)
    configs = trainer.lr_scheduler_configs
    step = configs[0].scheduler.last_epoch if configs else trainer.global_step  # it counts skipped batches too
    lr_factor = schedule(step) if schedule is not None else None  # with the final time trained
    final_lr = module.optim_config.lr * lr_factor if lr_factor is not None else None
    position = schedule.position(step) if schedule is not None else None
    falling = still_improving(control.validations, trainer.global_step)
    if trainer.is_global_zero:
        log.info(
            "training stopped: %s, after %d steps, %.1f min trained; learning rate at the end %.3g (%.0f %% "
            "of the schedule; its end is %.3g)",
            reason,
            trainer.global_step,
            control.elapsed / 60,
            final_lr or 0.0,
            100 * (position or 0.0),
            module.optim_config.lr * (config.optim.min_lr_ratio if config.optim.schedule == "cosine" else 1.0),
        )
        if falling:
            log.warning("%s", falling)

    model_path = out / "model.pt"
    if trainer.is_global_zero:
        last = ckpt_dir / "last.ckpt"
        best = ckpt.best_model_path or (str(last) if last.exists() else "")
        averaged = sorted(ckpt.best_k_models, key=lambda p: float(ckpt.best_k_models[p]))[: t.average_checkpoints]
        if averaged:
            from asr.training.averaging import average_checkpoints

            module.load_state_dict(average_checkpoints(averaged))
        elif best:
            state = torch.load(best, map_location="cpu", weights_only=True)
            weights = state.get("ema_state_dict") or state["state_dict"]
            module.load_state_dict(weights)
        metadata = {
            "best_val_wer": float(ckpt.best_model_score) if ckpt.best_model_score is not None else None,
            "checkpoint": os.path.basename(best) if best else None,
            "averaged_checkpoints": [os.path.basename(p) for p in averaged],
            "epochs": trainer.current_epoch,
            "train_minutes": round(minutes, 2),
            "precision": precision,
            "total_train_minutes": round(control.elapsed / 60, 2),
            "infeasible_utterances": module.infeasible_utterances,
            "train_utterances": len(train_utts),
            "train_hours": sum(u.duration for u in train_utts) / 3600,
            "skipped_train": len(train_skipped),
            "skipped_while_decoding": module.skipped_utterances,
            "git_commit": git_commit(),
            "config": config.to_dict(),
            "stop_reason": reason,
            "steps": trainer.global_step,
            "final_lr": final_lr,
            "schedule_position": position,
            "still_improving": falling,
            "validations": [{"step": s, "minutes": round(m / 60, 3), "val_wer": w} for s, m, w in control.validations],
            "batch": auto_batch.choice.to_dict()
            if auto_batch is not None and auto_batch.choice
            else BatchChoice(float(data_config.max_batch_seconds), module.optim_config.lr, "fixed").to_dict(),
            "init_from": init_report.to_dict() if init_report is not None else None,
        }
        metadata["card"] = model_card(
            config,
            out,
            (train_manifest, train_utts),
            (val_manifest, val_utts),
            metadata["best_val_wer"],
            None,  # the CER of the best checkpoint is not kept (only its WER): left out rather than another one's
            validation_confidence(module, val_utts, seed=t.seed),
            pretrained_from=card_name_of(init_from) if init_report is not None else None,
            commit=metadata["git_commit"],
        )
        save_model(model_path, module.model.cpu(), tokenizer, metadata)
        card_path = write_card_file(model_path, metadata["card"])
        log.info(
            "wrote %s (best val WER %s, %.1f min) and %s", model_path, metadata["best_val_wer"], minutes, card_path
        )
    return model_path
