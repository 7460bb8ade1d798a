"""`asr train`: configure Lightning, fit, and export the best weights as one self-contained ``model.pt``."""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import random
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from asr.data.audio import load_audio
from asr.data.dataset import Skipped
from asr.data.manifest import Utterance, read_manifest
from asr.model.file import save_model
from asr.training.batch_sizing import BatchChoice, amp_dtype_of, choose_auto_batch, longest_training_seconds, steps_cap
from asr.training.checkpointing import AtomicCheckpointIO, LastCheckpoint
from asr.training.config import Config, ConfigError, DataConfig, dump_config
from asr.training.ctc_module import CTCModule
from asr.training.datamodule import ASRDataModule, load_split
from asr.training.run_control import EARLY_STOPPING, STOP_REASONS, TIME_BUDGET, RunControl, read_state, still_improving
from asr.training.training_log import MetricsLog, TensorBoardLog

log = logging.getLogger("asr")


def cpu_has_amx_bf16() -> bool:
    """True on CPUs with AMX bf16 tiles (Intel Sapphire Rapids and later), where oneDNN's bf16 kernels are fast."""
    try:
        return bool(torch.cpu.get_capabilities().get("amx_bf16", False))
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, accelerator: str) -> str:
    """'auto' -> 16-mixed (fp16 autocast + gradient scaler) on GPUs; bf16-mixed on CPUs with AMX; else 32-true.

    Not bf16-mixed on GPUs, although they have it: under CUDA autocast PyTorch runs cuDNN's RNN kernels in float16
    whatever the autocast dtype (we measured float16 LSTM outputs under bf16 autocast on an H100, torch 2.11), so
    bf16-mixed would give float16 recurrent gradients with no loss scaling to protect them. 16-mixed runs the same
    kernels and adds the scaler. On CPUs fp16 is hundreds of times slower. bf16 pays on a CPU only where it has
    AMX tiles: there the synth recipe's BiLSTM trained 11-26 % faster, at about the same accuracy per epoch
    (recipes/synth/RESULTS.md); on CPUs without them (AVX-512 bf16 alone) bf16 gave no training speed-up.
    """
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if precision == "auto":
        if on_gpu:
            return "16-mixed"
        return "bf16-mixed" if cpu_has_amx_bf16() else "32-true"
    if not on_gpu and precision.startswith("16"):
        raise ConfigError(
            f"trainer.precision={precision} on a CPU: float16 runs hundreds of times slower than "
            "float32 there; use 32-true (or bf16-mixed)"
        )
    return precision


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


class TrainingStopped(Exception):
    """Training was stopped by Ctrl-C or SIGTERM; ``last.ckpt`` holds where it stopped."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


@torch.no_grad()
def estimate_global_stats(
    module: CTCModule, utterances: Sequence[Utterance], max_utterances: int = 500, seed: int = 0
) -> None:
    """Mean/std of log-mel per bin over a seeded random sample of the training set, for ``features.normalize:
    global``; a sample of the whole set, because the first lines of a sorted manifest are a handful of speakers."""
    feats = module.model.features
    total, total_sq, count = torch.zeros(feats.n_mels), torch.zeros(feats.n_mels), 0
    chosen = sorted(random.Random(seed).sample(range(len(utterances)), min(max_utterances, len(utterances))))
    for u in (utterances[i] for i in chosen):
        x = feats.log_mel(torch.from_numpy(load_audio(u.audio_filepath, module.model.sample_rate))[None])[0]
        total += x.sum(0)
        total_sq += (x**2).sum(0)
        count += x.shape[0]
    feats.set_global_stats(total, total_sq, count)


def write_skipped(path: Path, skipped: list[Skipped]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for s in skipped:
            f.write(f"{s}\n")


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


def check_not_finished(
    ckpt_path: str, max_epochs: int, max_minutes: float | None, max_steps: int = -1, patience: int = 0
) -> dict:
    """Refuse to resume a run that has nothing left to do under the given caps, saying which cap to raise;
    returns the checkpoint."""
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
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
) -> Path:
    """Train a model and write ``output_dir/model.pt``; returns that path.

    ``callbacks`` are added to Lightning's (tests use this to watch what each rank sees). ``init_from``: a
    model file to start from (:mod:`asr.training.finetune`); ignored when resuming, whose checkpoint holds the weights.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
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
    texts = [u.text for u in read_manifest(train_manifest, strict=False)] if config.tokenizer.type == "bpe" else []
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
    train_utts, train_skipped = load_split(
        train_manifest, tokenizer, output_frames, config.data.max_duration, fastest_speed=max(fastest, 1.0)
    )
    val_utts, val_skipped = load_split(val_manifest, tokenizer, output_frames, None)
    for name, utts, skipped in (("train", train_utts, train_skipped), ("val", val_utts, val_skipped)):
        hours = sum(u.duration for u in utts) / 3600
        log.info("%s: %d utterances, %.2f h; %d skipped", name, len(utts), hours, len(skipped))
        if skipped:
            write_skipped(out / f"skipped_{name}.txt", skipped)
            for s in skipped[:5]:
                log.warning("%s: skipped %s", name, s)
            log.warning(
                "%s: %d utterances skipped in all; the list is in %s", name, len(skipped), out / f"skipped_{name}.txt"
            )

    if config.features.normalize == "global" and init_report is None:  # a source model brings its own
        estimate_global_stats(module, train_utts, seed=config.trainer.seed)
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
    data = ASRDataModule(train_utts, val_utts, tokenizer, sr, data_config, seed=t.seed)
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
    control = RunControl(t.max_minutes, t.early_stopping_patience, t.early_stopping_min_delta)
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
        save_model(model_path, module.model.cpu(), tokenizer, metadata)
        log.info("wrote %s (best val WER %s, %.1f min)", model_path, metadata["best_val_wer"], minutes)
    return model_path
