#!/usr/bin/env python3
"""Training throughput of an ``asr`` config, measured through the real training path.

Why this script exists: an RNN-CTC model spends nearly all of its training time in the recurrent stack, and
how fast that stack runs depends on the batch shapes the sampler produces (padding), on precision, and on
how well the fused cuDNN / oneDNN kernels use the hardware. To tune any of these we need one number per
config that is comparable across machines (audio-seconds trained per wall-second) and a breakdown that says
where the time goes (step time, padding, recurrent GFLOP/s next to the machine's own matmul peak).

What is run is what ``asr train`` runs: a :class:`asr.training.ctc_module.CTCModule` built from the config, fed by a
``DataLoader`` over :class:`asr.data.sampler.DynamicBucketingSampler` batches and :func:`asr.data.dataset.collate`, inside
a Lightning ``Trainer`` with the config's precision, gradient clipping and AdamW. Only the audio is fake:
random noise of realistic durations, held in memory, so disk and decoding do not enter the figure (augmentation
such as speed perturbation does, as in training). The targets are random characters at a speaking rate of about
14 characters per second, capped so CTC can always align them. ``--real-audio`` trains on a manifest's own
files and transcripts instead, and ``--init-from`` starts from a trained model's weights (with both, a step of
train-clean-5 cost 7 % more than noise of the same durations: recipes/mini_librispeech/RESULTS.md).

OpenMP's spin setting is that of ``asr train`` (:func:`asr.openmp.set_for_training`, before torch loads), unless
the environment sets ``GOMP_SPINCOUNT`` (the figure changes with it: the same RESULTS section).

Examples::

    python scripts/bench_train.py --config recipes/librispeech/conf/train_100h.yaml --durations librispeech \\
        --device cuda --precision bf16 --steps 150 --warmup 10 --json out.json
    python scripts/bench_train.py --config recipes/synth/conf.yaml --durations synth --steps 20 --threads 2
    python scripts/bench_train.py --config recipes/synth/conf.yaml --durations synth --no-bucketing

FLOP counting: per frame, layer and direction a recurrent cell costs ``2 * G * H * (I + H)`` (G = 4 LSTM,
3 GRU, 1 RNN), the backward pass about twice the forward, so a training step costs ``3x`` the forward. The cells
run on the padded batch, so *executed* FLOPs use padded frames (hardware efficiency) and *useful* FLOPs use the
real frame counts (what the padding costs).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import resource
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

# first: the OpenMP spin `asr train` uses must be in place before torch loads its runtime
from asr import openmp

openmp.set_for_training()
# isort: split
import numpy as np
import torch

# Durations of LibriSpeech train-clean-100 (28,539 utterances, 100.6 h) and of the synth recipe's train split.
LIBRISPEECH_100H_UTTERANCES = 28539
SYNTH_UTTERANCES = 5000
CHARS_PER_SECOND = 14.0  # LibriSpeech reads at about 2.7 words/s, i.e. 14-15 characters/s with spaces
GATES = {"lstm": 4, "gru": 3, "rnn": 1}


# --- durations and fake data ----------------------------------------------------------------------------------


def synth_durations(kind: str, n: int, seed: int) -> np.ndarray:
    """Utterance durations (s) that look like a corpus, without the corpus.

    ``librispeech``: a gamma with mean 12.3 s and std 4 s clipped to 1-35 s (LibriSpeech's overall mean and
    range; the real histogram is skewed the other way, peaking near 15 s, so use ``--manifest`` with a real
    manifest for exact padding figures). ``synth``: gamma with mean 2.1 s, std 0.7 s, clipped to 0.5-5 s, as
    ``data/synth/train.jsonl`` (mean 2.13 s, std 0.66 s, 0.46-4.9 s).
    """
    rng = np.random.default_rng(seed)
    if kind == "librispeech":
        mean, std, lo, hi = 12.3, 4.0, 1.0, 35.0
    elif kind == "synth":
        mean, std, lo, hi = 2.1, 0.7, 0.5, 5.0
    else:
        raise ValueError(f"unknown duration distribution {kind!r}")
    shape = (mean / std) ** 2
    return np.clip(rng.gamma(shape, mean / shape, n), lo, hi).round(2)


def pieces_per_char(tokenizer: Any, texts: Sequence[str]) -> float:
    from asr.data.tokenizer import normalize_text

    sample = texts[:2000]
    return sum(len(tokenizer.encode(t)) for t in sample) / max(1, sum(len(normalize_text(t)) for t in sample))


class NoiseDataset(torch.utils.data.Dataset):
    """In-memory stand-in for :class:`asr.data.dataset.AudioDataset`: same item layout, audio cut from one noise buffer.

    Slicing a shared buffer costs nothing, so the benchmark measures training rather than audio generation;
    the collate copy into the padded batch still happens, as in training.
    """

    def __init__(
        self,
        durations: Sequence[float],
        sample_rate: int,
        target_lengths: Sequence[int],
        vocab_size: int,
        seed: int = 0,
    ):
        self.durations = [float(d) for d in durations]
        self.sample_rate = sample_rate
        self.target_lengths = [int(t) for t in target_lengths]
        self.vocab_size = vocab_size
        self.seed = seed
        longest = int(math.ceil(max(self.durations, default=1.0) * sample_rate)) + 1
        g = torch.Generator().manual_seed(seed)
        self.noise = 0.1 * torch.randn(2 * longest, generator=g)

    def __len__(self) -> int:
        return len(self.durations)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, index])
        n = max(1, int(round(self.durations[index] * self.sample_rate)))
        start = int(rng.integers(0, self.noise.numel() - n + 1))
        targets = torch.from_numpy(rng.integers(1, self.vocab_size, self.target_lengths[index])).long()
        return {
            "audio": self.noise[start : start + n],
            "targets": targets,
            "text": "",
            "index": index,
            "path": f"noise-{index}",
        }


class RandomBatches(torch.utils.data.Sampler[list[int]]):
    """Fixed-count batches of utterances drawn at random: what training without duration bucketing does."""

    def __init__(self, n: int, batch_size: int, seed: int = 0):
        self.n, self.batch_size, self.seed, self.epoch = n, max(1, batch_size), seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return max(1, self.n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        for i in range(len(self)):
            yield order[i * self.batch_size : (i + 1) * self.batch_size].tolist()


# --- machine figures --------------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(
    device: torch.device, dtype: torch.dtype, n: int, min_seconds: float = 0.5, tf32: bool = False
) -> float:
    """Measured GFLOP/s of one square ``n x n`` matmul: the practical ceiling the recurrent stack is judged by."""
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        for _ in range(2):
            a @ b
        sync(device)
        reps, start = 0, time.perf_counter()
        while True:
            a @ b
            reps += 1
            if reps % 4 == 0 or device.type == "cpu":
                sync(device)
                elapsed = time.perf_counter() - start
                if elapsed >= min_seconds and reps >= 3:
                    break
        return 2.0 * n**3 * reps / elapsed / 1e9
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (platform.processor() is empty on most Linux systems)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def short_path(path: str) -> str:
    """``recipes/librispeech/conf/train_100h.yaml`` -> ``conf/train_100h.yaml``: enough to tell configs apart."""
    parts = os.path.normpath(path).split(os.sep)
    return "/".join(parts[-2:])


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: the allocator's peak; CPU: the process's peak resident set (Linux reports KiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def recurrent_forward_flops_per_frame(dims: Any, input_size: int) -> float:
    """Forward FLOPs of the whole recurrent stack for one output frame of one utterance."""
    g, h, dirs = GATES[dims.cell], dims.hidden_size, 2 if dims.bidirectional else 1
    total, i = 0.0, input_size
    for _ in range(dims.num_layers):
        total += dirs * 2.0 * g * h * (i + h)
        i = h * dirs
    return total


# --- measuring ---------------------------------------------------------------------------------------------------


@dataclass
class StepRecord:
    batch_size: int
    audio_s: float  # real audio in the batch (before speed perturbation), seconds
    padded_s: float  # batch size x longest utterance, seconds
    frames: int  # real encoder output frames (after augmentation and subsampling)
    padded_frames: int  # batch size x encoder time steps: what the recurrent cells actually process
    wall_s: float  # since the previous step ended: data loading + compute + optimizer
    compute_s: float  # batch start to batch end inside Lightning
    # CPU seconds of this process (all its threads) in the same span: on a shared CPU, where wall time depends on
    # the other jobs, this is the comparable cost (run with --threads 1 so no time goes to threads waiting).
    cpu_s: float = 0.0
    lengths: list[int] = field(default_factory=list, repr=False)


class StepTimer:
    """Lightning callback that times each optimizer step after ``warmup`` and notes the batch shapes.

    A forward hook on the encoder reads the shapes the recurrent stack really saw (speed perturbation changes
    the lengths), so the FLOP count is exact for every step.
    """

    def __init__(self, warmup: int, device: torch.device, sample_rate: int, max_seconds: float | None):
        import lightning as L

        outer = self

        class _Callback(L.Callback):
            def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:  # noqa: ANN001
                outer._start(batch)

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
                outer._end(trainer, outputs)

        self.callback = _Callback()
        self.warmup, self.device, self.sr, self.max_seconds = warmup, device, sample_rate, max_seconds
        self.records: list[StepRecord] = []
        self.skipped = 0
        self.steps_seen = 0
        self._t_start = self._t_prev_end = self._t_measure = 0.0
        self._batch: dict[str, Any] = {}
        self._enc: tuple[int, int, torch.Tensor] | None = None

    def encoder_hook(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        log_probs, lengths = output
        self._enc = (int(log_probs.shape[0]), int(log_probs.shape[1]), lengths.detach())

    def _start(self, batch: dict[str, Any]) -> None:
        sync(self.device)
        self._t_start = time.perf_counter()
        self._c_start = time.process_time()
        lengths = batch["audio_lengths"]
        b = int(lengths.numel())
        self._batch = {
            "batch_size": b,
            "audio_s": float(lengths.sum()) / self.sr,
            "padded_s": b * float(lengths.max()) / self.sr if b else 0.0,
        }
        self._enc = None

    def _end(self, trainer: Any, outputs: Any) -> None:
        sync(self.device)
        now = time.perf_counter()
        self.steps_seen += 1
        if self.steps_seen <= self.warmup:
            self._t_prev_end = self._t_measure = now
            return
        if outputs is None or self._enc is None:  # non-finite loss or empty batch: no optimizer step was taken
            self.skipped += 1
        else:
            b, t, lens = self._enc
            lens_list = lens.cpu().tolist()
            self.records.append(
                StepRecord(
                    wall_s=now - self._t_prev_end,
                    compute_s=now - self._t_start,
                    cpu_s=time.process_time() - self._c_start,
                    frames=int(sum(lens_list)),
                    padded_frames=b * t,
                    lengths=lens_list,
                    **self._batch,
                )
            )
        self._t_prev_end = now
        if self.max_seconds is not None and now - self._t_measure > self.max_seconds:
            trainer.should_stop = True

    @property
    def measured_seconds(self) -> float:
        return self._t_prev_end - self._t_measure if self.records or self.skipped else 0.0


def time_recurrent_stack(
    encoder: torch.nn.Module,
    batch_size: int,
    lengths: Sequence[int],
    max_len: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    reps: int,
) -> tuple[float, torch.dtype]:
    """Seconds per forward+backward of ``encoder.layers`` alone, on a batch of the given shape.

    Run exactly as :class:`asr.model.network.Encoder` runs them (reverse index, dropout between layers, input that needs
    a gradient as the conv front-end's output does), so the figure is the stack's share of a training step
    without the features, augmentation, CTC and optimizer around it. Returns (seconds, output dtype).
    """
    from asr.model.network import reverse_index

    encoder.to(device).train()  # Lightning's teardown moved the module back to the CPU after fit()
    params = [p for p in encoder.layers.parameters()]
    x = torch.randn(batch_size, max_len, encoder.frontend.output_size, device=device, requires_grad=True)
    lens = torch.tensor(list(lengths), device=device).clamp(min=1, max=max_len)
    reverse = reverse_index(lens, max_len) if encoder.dims.bidirectional else None
    dtype = torch.float32

    def once() -> None:
        nonlocal dtype
        with torch.autocast(device_type=device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            y = x
            for i, layer in enumerate(encoder.layers):
                y = layer(encoder.dropout(y) if i > 0 else y, reverse)
        dtype = y.dtype
        y.float().sum().backward()
        for p in params:
            p.grad = None
        x.grad = None

    once()
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        once()
    sync(device)
    return (time.perf_counter() - start) / reps, dtype


# --- main ----------------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("overrides", nargs="*", help="config overrides, section.key=value (e.g. model.hidden_size=512)")
    p.add_argument("--config", default="recipes/synth/conf.yaml", help="training config YAML")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--durations",
        choices=("librispeech", "synth"),
        default="librispeech",
        help="duration distribution of the fake corpus",
    )
    src.add_argument("--manifest", help="take the durations from this real manifest instead")
    p.add_argument(
        "--real-audio",
        action="store_true",
        help="with --manifest: train on its audio files and transcripts (decoding enters the figure) instead of "
        "noise of their durations; for effects that depend on what the audio holds",
    )
    p.add_argument("--init-from", help="start from this model file's weights (a fine-tuning run's steps)")
    p.add_argument(
        "--num-utterances",
        type=int,
        help="corpus size (default: 28539 for librispeech = train-clean-100, 5000 for synth, "
        "all of a manifest); padding depends on it",
    )
    p.add_argument(
        "--no-bucketing",
        action="store_true",
        help="random fixed-count batches instead of DynamicBucketingSampler (for comparison)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        help="utterances per batch with --no-bucketing (default: the bucketing sampler's mean, so "
        "both see the same audio per step on average)",
    )
    p.add_argument("--steps", type=int, default=20, help="measured optimizer steps")
    p.add_argument("--warmup", type=int, default=3, help="steps run before measuring (at least 1)")
    p.add_argument(
        "--max-seconds",
        type=float,
        help="stop measuring after this many seconds and report what was done (for time-boxed runs)",
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda[:N]")
    p.add_argument(
        "--precision",
        choices=("32", "bf16", "16"),
        default="32",
        help="32: fp32; bf16: bf16 autocast (Lightning's bf16-mixed) on CUDA or CPU; "
        "16: fp16 autocast with a gradient scaler (16-mixed; CUDA only)",
    )
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all cores)")
    p.add_argument(
        "--num-workers",
        type=int,
        help="DataLoader workers (default: the config's on CUDA, 0 on CPU so workers don't steal the "
        "cores being measured)",
    )
    p.add_argument(
        "--stack-reps", type=int, default=5, help="forward+backward passes of the recurrent stack alone (0: skip)"
    )
    p.add_argument("--no-peak", action="store_true", help="skip the matmul peak measurement")
    p.add_argument("--peak-size", type=int, help="matmul size for the peak (default 2048 CPU, 8192 CUDA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label", help="name of this run in the table and JSON")
    p.add_argument("--json", help="write all figures to this JSON file")
    args = p.parse_args(argv)
    if args.warmup < 1:
        p.error("--warmup must be at least 1 (the first step builds kernels and caches)")
    if args.steps < 1:
        p.error("--steps must be at least 1")
    if args.real_audio and not args.manifest:
        p.error("--real-audio needs --manifest")
    return args


def build(args: argparse.Namespace) -> tuple[Any, Any, Any, Any, np.ndarray]:
    """Config -> (config, CTCModule, DataLoader, sampler, durations), exactly as ``asr train`` builds them."""
    from asr.data.dataset import collate
    from asr.data.manifest import read_manifest
    from asr.data.sampler import DynamicBucketingSampler
    from asr.training.config import load_config
    from asr.training.ctc_module import CTCModule

    config = load_config(args.config, args.overrides)
    # the manifest's own utterances: their durations, and with --real-audio their files (bad lines are ignored)
    utterances = read_manifest(args.manifest, strict=False, errors=[]) if args.manifest else None
    # Word pieces (tokenizer.type: bpe) are learned from the manifest's transcripts, as `asr train` does.
    texts = [u.text for u in utterances] if utterances is not None and config.tokenizer.type == "bpe" else []
    module = CTCModule.from_config(config, train_texts=texts)
    tokenizer, sr = module.tokenizer, module.model.sample_rate
    if args.init_from:
        from asr.training.finetune import init_from

        init_from(module.model, tokenizer, config, args.init_from)

    if utterances is not None:
        durations = np.array([u.duration for u in utterances], dtype=np.float64)
        if args.num_utterances:
            pick = np.random.default_rng(args.seed).permutation(len(durations))[: args.num_utterances]
            durations, utterances = durations[pick], [utterances[i] for i in pick]
    else:
        n = args.num_utterances or (
            LIBRISPEECH_100H_UTTERANCES if args.durations == "librispeech" else SYNTH_UTTERANCES
        )
        durations = synth_durations(args.durations, n, args.seed)
    if config.data.max_duration is not None:  # training skips these too
        keep = durations <= config.data.max_duration
        durations = durations[keep]
        if utterances is not None:
            utterances = [u for u, kept in zip(utterances, keep) if kept]
    if len(durations) == 0:
        raise SystemExit("no utterances left after data.max_duration")

    if args.real_audio:
        from asr.data.dataset import AudioDataset

        dataset: Any = AudioDataset(utterances, tokenizer, sr)
    else:
        # Targets CTC can align even after the fastest speed perturbation shortens the audio.
        fastest = max(config.augment.speed_factors) if config.augment.speed_perturb else 1.0
        samples = torch.tensor([int(d * sr / fastest) for d in durations], dtype=torch.long)
        frames = module.model.output_lengths(samples).numpy()
        # Word pieces: as many targets per second as the transcripts have pieces per character.
        rate = CHARS_PER_SECOND * (pieces_per_char(tokenizer, texts) if texts else 1.0)
        target_lengths = np.maximum(1, np.minimum(np.round(rate * durations), (0.8 * frames).astype(int)))
        dataset = NoiseDataset(durations, sr, target_lengths.tolist(), len(tokenizer), seed=args.seed)

    c = config.data
    # SortaGrad is off: its ascending first epoch would measure only the shortest utterances.
    bucketing = DynamicBucketingSampler(
        durations,
        max_batch_seconds=c.max_batch_seconds,
        shuffle=True,
        seed=args.seed,
        num_replicas=1,
        rank=0,
        sortagrad=False,
        max_batch_size=c.max_batch_size,
        shuffle_window=c.shuffle_window,
    )
    sampler: Any = bucketing
    if args.no_bucketing:
        size = args.batch_size or max(1, round(len(durations) / len(bucketing)))
        sampler = RandomBatches(len(durations), size, seed=args.seed)
    device = torch.device(args.device)
    workers = args.num_workers if args.num_workers is not None else (c.num_workers if device.type == "cuda" else 0)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=workers,
        pin_memory=c.pin_memory and device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )
    return config, module, loader, sampler, durations


def run(args: argparse.Namespace) -> dict[str, Any]:
    import lightning as L

    from asr.data.sampler import padding_fraction

    torch.set_num_threads(args.threads)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings(
        "ignore",
        message=".*(num_workers|does not have many workers|LeafSpec|TreeSpec|bottleneck|precision|val_dataloader).*",
    )
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no GPU")
    L.seed_everything(args.seed, workers=True, verbose=False)
    config, module, loader, sampler, durations = build(args)
    dims = module.model.dims
    encoder = module.model.encoder
    n_params = sum(p.numel() for p in module.parameters())
    fwd_per_frame = recurrent_forward_flops_per_frame(dims, encoder.frontend.output_size)
    amp_dtype = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}[args.precision]

    peaks: dict[str, float] = {}
    if not args.no_peak:
        size = args.peak_size or (8192 if device.type == "cuda" else 2048)
        peaks["fp32"] = matmul_gflops(device, torch.float32, size)
        if device.type == "cuda":
            peaks["tf32"] = matmul_gflops(device, torch.float32, size, tf32=True)
        peaks["bf16"] = matmul_gflops(device, torch.bfloat16, size)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)

    timer = StepTimer(args.warmup, device, module.model.sample_rate, args.max_seconds)
    hook = encoder.register_forward_hook(timer.encoder_hook)
    trainer = L.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=[device.index or 0] if device.type == "cuda" else 1,
        precision={"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}[args.precision],
        max_steps=args.warmup + args.steps,
        max_epochs=-1,
        gradient_clip_val=config.optim.grad_clip or None,
        accumulate_grad_batches=config.trainer.accumulate_grad_batches,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        use_distributed_sampler=False,
        callbacks=[timer.callback],
    )
    started = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    total_wall = time.perf_counter() - started
    hook.remove()
    recs = timer.records
    if not recs:
        raise SystemExit("no step was measured (all skipped, or too few batches)")
    peak_mb = peak_memory_mb(device)

    wall = timer.measured_seconds
    audio_s = sum(r.audio_s for r in recs)
    padded_s = sum(r.padded_s for r in recs)
    exec_flops = 3.0 * fwd_per_frame * sum(r.padded_frames for r in recs)
    useful_flops = 3.0 * fwd_per_frame * sum(r.frames for r in recs)
    throughput = audio_s / wall
    steps_wall = [r.wall_s for r in recs]

    # Which peak is fair: the dtype the stack really ran in (CPU autocast covers LSTMs too, but check), and
    # TF32 for fp32 on CUDA because cuDNN's RNNs use TF32 unless torch.backends.cudnn.allow_tf32 is off.
    result: dict[str, Any] = {}
    stack: dict[str, Any] = {}
    if args.stack_reps > 0:
        median_rec = sorted(recs, key=lambda r: r.padded_frames)[len(recs) // 2]
        b, t = median_rec.batch_size, median_rec.padded_frames // max(1, median_rec.batch_size)
        secs, out_dtype = time_recurrent_stack(encoder, b, median_rec.lengths, t, device, amp_dtype, args.stack_reps)
        flops = 3.0 * fwd_per_frame * b * t
        stack = {
            "batch_size": b,
            "time_steps": t,
            "seconds": secs,
            "gflops": flops / secs / 1e9,
            "dtype": str(out_dtype).replace("torch.", ""),
        }
    ran_bf16 = stack.get("dtype", str(amp_dtype).replace("torch.", "")) == "bfloat16"
    if ran_bf16:
        ref = "bf16"
    elif device.type == "cuda" and torch.backends.cudnn.allow_tf32:
        ref = "tf32"
    else:
        ref = "fp32"
    peak = peaks.get(ref)

    gpu_name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    result.update(
        {
            "label": args.label
            or f"{short_path(args.config)} {args.precision} {'no-bucketing' if args.no_bucketing else 'bucketing'}",
            "config": args.config,
            "overrides": list(args.overrides),
            "durations": args.manifest or args.durations,
            "audio": "real (the manifest's files)" if args.real_audio else "noise",
            "init_from": args.init_from,
            "num_utterances": int(len(durations)),
            "corpus_hours": float(durations.sum() / 3600),
            "mean_duration_s": float(durations.mean()),
            "bucketing": not args.no_bucketing,
            "device": str(device),
            "device_name": gpu_name,
            "precision": args.precision,
            "threads": torch.get_num_threads(),
            "gomp_spincount": os.environ.get("GOMP_SPINCOUNT", "libgomp default"),
            "num_workers": loader.num_workers,
            "torch": torch.__version__,
            "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
            "python": platform.python_version(),
            "parameters": n_params,
            "model": {
                "cell": dims.cell,
                "hidden_size": dims.hidden_size,
                "num_layers": dims.num_layers,
                "bidirectional": dims.bidirectional,
                "subsampling": dims.subsampling,
                "rnn_input_size": encoder.frontend.output_size,
            },
            "max_batch_seconds": config.data.max_batch_seconds,
            "steps_measured": len(recs),
            "steps_skipped": timer.skipped,
            "warmup_steps": args.warmup,
            "stopped_early": len(recs) + timer.skipped < args.steps,
            "measured_wall_s": wall,
            "total_wall_s": total_wall,
            "audio_s_per_s": throughput,  # = audio-hours per device-hour
            "epoch_minutes_100h": 100.6 * 60 / throughput,
            "step_s_mean": statistics.fmean(steps_wall),
            "step_s_median": statistics.median(steps_wall),
            "step_s_p90": float(np.percentile(steps_wall, 90)),
            "compute_s_mean": statistics.fmean(r.compute_s for r in recs),
            "audio_s_per_cpu_s": audio_s / max(1e-9, sum(r.cpu_s for r in recs)),
            "batch_size_mean": statistics.fmean(r.batch_size for r in recs),
            "audio_s_per_batch": audio_s / len(recs),
            "padded_s_per_batch": padded_s / len(recs),
            "padding_fraction": 1.0 - audio_s / padded_s,
            "padding_fraction_frames": 1.0 - sum(r.frames for r in recs) / sum(r.padded_frames for r in recs),
            "sampler_padding_fraction": padding_fraction(durations, list(sampler)),
            "sampler_batches_per_epoch": len(sampler),
            "peak_memory_mb": peak_mb,
            "peak_memory_kind": "cuda max_memory_allocated" if device.type == "cuda" else "process max RSS",
            "matmul_peak_gflops": peaks,
            "reference_peak": ref,
            "recurrent_gflop_per_frame_train": 3.0 * fwd_per_frame / 1e9,
            "recurrent_gflops_executed": exec_flops / wall / 1e9,
            "recurrent_gflops_useful": useful_flops / wall / 1e9,
            "recurrent_fraction_of_peak": exec_flops / wall / 1e9 / peak if peak else None,
            "stack_alone": stack,
            "stack_fraction_of_peak": stack["gflops"] / peak if stack and peak else None,
            "step_seconds": [round(s, 5) for s in steps_wall],
        }
    )
    return result


def fmt_table(r: dict[str, Any]) -> str:
    """The figures as an aligned two-column table, in the order one reads them when tuning."""

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f} %"

    peaks = r["matmul_peak_gflops"]
    stack = r["stack_alone"]
    rows: list[tuple[str, str]] = [
        ("run", r["label"]),
        (
            "device",
            f"{r['device']} ({r['device_name']}), torch {r['torch']}"
            + (
                f", cuDNN {r['cudnn']}"
                if r["cudnn"]
                else f", {r['threads']} threads, GOMP_SPINCOUNT {r.get('gomp_spincount', '-')}"
            ),
        ),
        (
            "model",
            f"{r['model']['num_layers']}x{'Bi' if r['model']['bidirectional'] else ''}"
            f"{r['model']['cell'].upper()}-{r['model']['hidden_size']}, subsampling "
            f"{r['model']['subsampling']}, {r['parameters'] / 1e6:.1f} M parameters",
        ),
        ("precision", r["precision"]),
        (
            "corpus",
            f"{r['durations']}: {r['num_utterances']} utterances, {r['corpus_hours']:.1f} h, "
            f"mean {r['mean_duration_s']:.2f} s; audio: {r.get('audio', 'noise')}"
            + (f"; weights from {r['init_from']}" if r.get("init_from") else ""),
        ),
        (
            "batching",
            f"{'DynamicBucketingSampler' if r['bucketing'] else 'random fixed-count'}, "
            f"max_batch_seconds {r['max_batch_seconds']:g}, {r['sampler_batches_per_epoch']} "
            f"batches/epoch",
        ),
        (
            "steps",
            f"{r['steps_measured']} measured after {r['warmup_steps']} warm-up"
            + (f", {r['steps_skipped']} skipped" if r["steps_skipped"] else "")
            + (" (stopped early: --max-seconds)" if r["stopped_early"] else ""),
        ),
        ("THROUGHPUT", f"{r['audio_s_per_s']:.1f} audio-s per wall-s (= audio-h per device-h)"),
        ("  100 h epoch", f"{r['epoch_minutes_100h']:.1f} min"),
        ("per CPU-second", f"{r['audio_s_per_cpu_s']:.1f} audio-s per CPU-s of this process (compute only)"),
        (
            "step time",
            f"mean {r['step_s_mean']:.3f} s, median {r['step_s_median']:.3f} s, "
            f"p90 {r['step_s_p90']:.3f} s (compute only: {r['compute_s_mean']:.3f} s)",
        ),
        (
            "batch",
            f"{r['batch_size_mean']:.1f} utterances, {r['audio_s_per_batch']:.0f} s audio, "
            f"{r['padded_s_per_batch']:.0f} s padded",
        ),
        (
            "padding",
            f"{pct(r['padding_fraction'])} of audio samples, {pct(r['padding_fraction_frames'])} of "
            f"RNN frames (sampler, whole epoch: {pct(r['sampler_padding_fraction'])})",
        ),
        ("peak memory", f"{r['peak_memory_mb']:.0f} MiB ({r['peak_memory_kind']})"),
        ("matmul peak", ", ".join(f"{k} {v:.0f}" for k, v in peaks.items()) + " GFLOP/s" if peaks else "-"),
        (
            "RNN in training",
            f"{r['recurrent_gflops_executed']:.1f} GFLOP/s executed "
            f"({pct(r['recurrent_fraction_of_peak'])} of {r['reference_peak']} peak), "
            f"{r['recurrent_gflops_useful']:.1f} useful",
        ),
    ]
    if stack:
        rows.append(
            (
                "RNN stack alone",
                f"{stack['gflops']:.1f} GFLOP/s ({pct(r['stack_fraction_of_peak'])} of "
                f"{r['reference_peak']} peak), {stack['seconds'] * 1e3:.1f} ms fwd+bwd "
                f"on ({stack['batch_size']}, {stack['time_steps']}) in {stack['dtype']}",
            )
        )
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print(fmt_table(result), flush=True)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
