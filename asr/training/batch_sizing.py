"""Batch size by measurement: the largest padded-seconds budget whose training step fits in GPU memory.

Why: a config's ``data.max_batch_seconds`` is tuned on one GPU and wastes most of a bigger one (the 100 h
LibriSpeech config used 4.7 of 80 GiB on an H100, and a 4x larger budget doubled its throughput). Lightning's
batch-size finder probes a *count* of samples; with duration-bucketed batches the quantity that bounds memory is
batch size x longest duration, so this probe works in seconds of audio instead: it runs forward + backward of
``n`` copies of the longest utterance the sampler can put in a batch, doubling ``n`` until the step no longer fits
(an out-of-memory error, or peak memory above ``memory_fraction`` of the device), then bisects between the last
fit and the first failure. Doubling also stops once it no longer buys throughput (the GPU is saturated, and a
larger batch would only mean fewer optimizer steps per epoch). The budget returned is ``n x longest`` (every batch
the sampler cuts holds at most that many padded seconds, and shorter utterances use less memory per second).

The learning rate follows the batch by the square-root rule (:func:`scale_lr`): for Adam-type optimisers the
gradient noise scales with 1/sqrt(batch), and sqrt scaling keeps the update's signal-to-noise constant (Malladi et
al., 2022, "On the SDEs and Scaling Rules for Adaptive Gradient Algorithms"); linear scaling, right for SGD,
overshoots with Adam at 4x and beyond.
"""

from __future__ import annotations

import gc
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

log = logging.getLogger("asr")

# The largest batch (padded seconds) the probe tries, cap or no cap.
MAX_PROBE_SECONDS = 40_000.0


@dataclass
class ProbeResult:
    batch_seconds: float  # the padded-seconds budget that fits
    batch_size: int  # utterances of the longest duration that fit
    longest_seconds: float
    peak_bytes: int  # peak memory of the largest step that fit
    total_bytes: int
    # (utterances, fitted, peak bytes, audio-seconds per second of the step)
    tried: list[tuple[int, bool, int, float]] = field(default_factory=list)


def scale_lr(lr: float, batch_seconds: float, reference_seconds: float, max_factor: float = 4.0) -> float:
    """``lr`` tuned at ``reference_seconds`` per batch, rescaled for ``batch_seconds`` by the square-root rule.

    The factor is capped at ``max_factor`` (16x the batch): past that, the warm-up rather than the peak learning
    rate is usually what keeps a recurrent network stable, and the rule has not been checked.
    """
    if batch_seconds <= 0 or reference_seconds <= 0:
        raise ValueError("batch seconds must be positive")
    return lr * min(max_factor, math.sqrt(batch_seconds / reference_seconds))


def choose_batch(try_n: Callable[[int], float | None], cap: int, min_gain: float = 0.1) -> int:
    """The batch (in utterances, at most ``cap``) to train with; 0 if not even one fits.

    ``try_n(n)`` runs a step of ``n`` utterances and returns its throughput, or ``None`` when it does not fit.
    Doubling goes on while the step fits and the doubled batch is at least ``min_gain`` faster: once the GPU is
    saturated a larger batch only costs optimizer steps per epoch. When memory, not saturation, stops the
    doubling, bisection narrows the gap to the first failure to about 6 % (each try is a full training step, so
    an exact answer is not worth the extra tries). Fitting is assumed monotone in ``n``.
    """
    good, good_speed, bad, n = 0, 0.0, cap + 1, 1
    while n <= cap:
        speed = try_n(n)
        if speed is None:
            bad = n
            break
        if good and speed < (1 + min_gain) * good_speed:
            return good  # saturated: the doubling did not pay
        good, good_speed, n = n, speed, n * 2
    if good == 0:
        return 0
    if bad == cap + 1:
        if good < cap and try_n(cap) is not None:
            return cap
        bad = cap if good < cap else bad
    while bad - good > max(1, good // 16):
        mid = (good + bad) // 2
        if try_n(mid) is not None:
            good = mid
        else:
            bad = mid
    return good


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


def _try_step(
    model: nn.Module,
    n: int,
    samples: int,
    target_len: int,
    vocab: int,
    blank: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> tuple[int, float]:
    """Forward + backward of ``n`` utterances of ``samples`` samples, twice (the first builds cuDNN plans);
    returns (peak bytes, seconds of the second step). Raises on out-of-memory."""
    torch.cuda.reset_peak_memory_stats(device)
    seconds = 0.0
    for _ in range(2):
        started = time.perf_counter()
        _step(model, n, samples, target_len, vocab, blank, device, amp_dtype)
        torch.cuda.synchronize(device)
        seconds = time.perf_counter() - started
        model.zero_grad(set_to_none=True)
    return int(torch.cuda.max_memory_allocated(device)), seconds


def _step(
    model: nn.Module,
    n: int,
    samples: int,
    target_len: int,
    vocab: int,
    blank: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> None:
    audio = torch.randn(n, samples, device=device) * 0.05
    lengths = torch.full((n,), samples, dtype=torch.long, device=device)
    targets = torch.randint(1, vocab, (n, target_len), device=device)
    targets[targets == blank] = (blank + 1) % vocab
    with torch.autocast(device_type=device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        log_probs, out_lens = model(audio, lengths)
    loss = nn.functional.ctc_loss(
        log_probs.float().transpose(0, 1),
        targets,
        out_lens,
        torch.full((n,), target_len, dtype=torch.long, device=device),
        blank=blank,
        reduction="sum",
        zero_infinity=True,
    )
    loss.backward()


def probe_batch_seconds(
    model: nn.Module,
    longest_seconds: float,
    sample_rate: int,
    vocab_size: int,
    device: torch.device | str = "cuda",
    amp_dtype: torch.dtype | None = torch.float16,
    memory_fraction: float = 0.6,
    max_batch_seconds: float = MAX_PROBE_SECONDS,
    min_gain: float = 0.0,
    blank: int = 0,
    chars_per_second: float = 15.0,
) -> ProbeResult:
    """The padded-seconds budget to train with on ``device`` (a CUDA device): see :func:`choose_batch`.

    ``model`` maps (audio, lengths) to (log-probs, frame lengths), as :class:`asr.model.network.ASRModel` does; it is
    moved to ``device`` and its gradients are cleared afterwards. ``longest_seconds`` should already include the
    slowest speed perturbation (0.9 makes audio 11 % longer). ``memory_fraction`` is the share of the device's
    memory the probe's peak may reach: training needs more than the probe sees (optimizer state, SpecAugment,
    and above all the allocator's fragmentation over batches of changing shapes). On an H100 a 5xBiLSTM-512
    step that peaked at 84 % in the probe ran out of memory in training with 9.4 GiB reserved but unused,
    hence 0.6. ``max_batch_seconds`` caps the search.
    """
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError("batch-size probing measures GPU memory; on a CPU keep the config's max_batch_seconds")
    model = model.to(device).train()
    total = torch.cuda.get_device_properties(device).total_memory
    samples = int(round(longest_seconds * sample_rate))
    frames = int(model.output_lengths(torch.tensor([samples])).item()) if hasattr(model, "output_lengths") else samples
    target_len = max(1, min(int(chars_per_second * longest_seconds), frames // 2))
    cap = max(1, int(max_batch_seconds // longest_seconds))
    tried: list[tuple[int, bool, int, float]] = []

    def try_n(n: int) -> float | None:
        peak, seconds, ok = 0, 0.0, False
        try:
            peak, seconds = _try_step(model, n, samples, target_len, vocab_size, blank, device, amp_dtype)
            ok = peak <= memory_fraction * total
        except RuntimeError as e:  # torch.cuda.OutOfMemoryError is a RuntimeError
            if not _is_oom(e):
                raise
        finally:
            model.zero_grad(set_to_none=True)
            gc.collect()
            torch.cuda.empty_cache()
        speed = n * longest_seconds / seconds if ok and seconds > 0 else None
        tried.append((n, ok, peak, speed or 0.0))
        log.info(
            "batch probe: %d x %.1f s -> %s (peak %.1f of %.1f GiB, %s audio-s/s)",
            n,
            longest_seconds,
            "fits" if ok else "too large",
            peak / 2**30,
            total / 2**30,
            f"{speed:.0f}" if speed else "-",
        )
        return speed

    good = choose_batch(try_n, cap, min_gain)
    if good == 0:
        raise RuntimeError(
            f"one utterance of {longest_seconds:.1f} s does not fit in {device}'s memory: "
            "lower data.max_duration or the model size"
        )
    peak = max(p for m, ok, p, _ in tried if ok and m == good)
    return ProbeResult(good * longest_seconds, good, longest_seconds, peak, total, tried)


# --- in training: data.max_batch_seconds: auto -----------------------------------------------------------------
@dataclass
class BatchChoice:
    """The padded-seconds budget a run trains with, and the learning rate that goes with it."""

    batch_seconds: float
    lr: float
    how: str  # "probed on cuda:0", "CPU fallback", "resumed", "fixed"

    def to_dict(self) -> dict[str, float | str]:
        return {"batch_seconds": self.batch_seconds, "lr": self.lr, "how": self.how}


def longest_training_seconds(durations: list[float], speed_factors: list[float] | None) -> float:
    """The longest utterance a training batch can hold: the longest kept after ``data.max_duration``, made longer
    by the slowest speed perturbation (0.9 plays 11 % longer) when it is on (``speed_factors`` None: off)."""
    slowest = min(speed_factors) if speed_factors else 1.0
    return max(durations) / min(slowest, 1.0)


def steps_cap(
    epoch_seconds: float, min_steps: int, ranks: int = 1, accumulate: int = 1, longest_seconds: float = 0.0
) -> float:
    """The largest per-rank batch (padded seconds) that still leaves ``min_steps`` optimizer steps per epoch of
    ``epoch_seconds`` of audio, with ``ranks`` data-parallel ranks each accumulating ``accumulate`` batches per
    step; never below one longest utterance (a batch must hold it)."""
    return max(longest_seconds, epoch_seconds / (min_steps * ranks * accumulate))


def choose_auto_batch(
    on_gpu: bool,
    probe: Callable[[float], float],
    reference_seconds: float,
    lr: float,
    agree: Callable[[float], float] = lambda x: x,
    device: str = "cuda",
    cap_seconds: float | None = None,
) -> BatchChoice:
    """``data.max_batch_seconds: auto``: on a GPU the probed budget (``probe(limit)``, searched up to ``limit``
    seconds), made the same on every rank by ``agree`` (the minimum over ranks under DDP), with ``lr`` scaled by
    :func:`scale_lr`; on a CPU, where memory does not bound the batch, ``reference_seconds`` and ``lr`` unchanged.

    ``cap_seconds`` (:func:`steps_cap`) bounds the search so that an epoch keeps enough optimizer steps.
    """
    if not on_gpu:
        log.info(
            "data.max_batch_seconds: auto on a CPU: training with data.reference_batch_seconds = %g s and "
            "optim.lr = %g (the probe measures GPU memory)",
            reference_seconds,
            lr,
        )
        return BatchChoice(reference_seconds, lr, "CPU fallback")
    limit = cap_seconds if cap_seconds is not None else MAX_PROBE_SECONDS
    seconds = agree(probe(limit))
    scaled = scale_lr(lr, seconds, reference_seconds)
    # The probe stops within one utterance of the limit when memory is not what binds.
    capped = cap_seconds is not None and seconds > 0.9 * cap_seconds
    how = f"probed on {device}" + (", capped by data.auto_min_steps_per_epoch" if capped else "")
    log.info(
        "data.max_batch_seconds: auto -> %.0f s of padded audio per batch (%s%s); optim.lr %g -> %g "
        "(square-root rule from data.reference_batch_seconds = %g s)",
        seconds,
        how,
        f": memory would allow more, but an epoch would then have fewer than the minimum steps (at most "
        f"{limit:.0f} s per batch)"
        if capped
        else "",
        lr,
        scaled,
        reference_seconds,
    )
    return BatchChoice(seconds, scaled, how)


def amp_dtype_of(precision: str) -> torch.dtype | None:
    """The autocast dtype a Lightning precision string trains with (None: full precision)."""
    if precision.startswith("16"):
        return torch.float16
    if precision.startswith("bf16"):
        return torch.bfloat16
    return None
