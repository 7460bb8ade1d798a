"""Batch size by measurement: the largest padded-seconds budget whose training step fits in GPU memory.

Why: a config's ``data.max_batch_seconds`` is tuned on one GPU and wastes most of a bigger one (the 100 h
LibriSpeech config used 4.7 of 80 GiB on an H100, and a 4x larger budget doubled its throughput). Lightning's
batch-size finder probes a *count* of samples; with duration-bucketed batches the quantity that bounds memory is
batch size x longest duration, so this probe works in seconds of audio instead: it runs forward + backward of
``n`` copies of the longest utterance the sampler can put in a batch, doubling ``n`` until the step no longer fits
(an out-of-memory error, or peak memory above ``memory_fraction`` of the device), then bisects between the last
fit and the first failure. The budget returned is ``n_fit x longest`` (every batch the sampler cuts holds at most
that many padded seconds, and shorter utterances use less memory per second, not more).

The learning rate follows the batch by the square-root rule (:func:`scale_lr`): for Adam-type optimisers the
gradient noise scales with 1/sqrt(batch), and sqrt scaling keeps the update's signal-to-noise constant (Malladi et
al., 2022, "On the SDEs and Scaling Rules for Adaptive Gradient Algorithms"); linear scaling, right for SGD,
overshoots with Adam at 4x and beyond.
"""

from __future__ import annotations

import gc
import logging
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

log = logging.getLogger("asr")


@dataclass
class ProbeResult:
    batch_seconds: float  # the padded-seconds budget that fits
    batch_size: int  # utterances of the longest duration that fit
    longest_seconds: float
    peak_bytes: int  # peak memory of the largest step that fit
    total_bytes: int
    tried: list[tuple[int, bool, int]] = field(default_factory=list)  # (utterances, fitted, peak bytes)


def scale_lr(lr: float, batch_seconds: float, reference_seconds: float, max_factor: float = 4.0) -> float:
    """``lr`` tuned at ``reference_seconds`` per batch, rescaled for ``batch_seconds`` by the square-root rule.

    The factor is capped at ``max_factor`` (16x the batch): past that, the warm-up rather than the peak learning
    rate is usually what keeps a recurrent network stable, and the rule has not been checked.
    """
    if batch_seconds <= 0 or reference_seconds <= 0:
        raise ValueError("batch seconds must be positive")
    return lr * min(max_factor, math.sqrt(batch_seconds / reference_seconds))


def largest_fitting(fits: Callable[[int], bool], cap: int) -> int:
    """Largest ``n <= cap`` with ``fits(n)`` (0 if not even 1 fits), assuming fitting is monotone in ``n``.

    Doubling finds the first failure in log2(n) tries, then bisection narrows the gap to about 6 % of ``n``
    (each try is a full training step, so an exact answer is not worth the extra tries).
    """
    good, bad, n = 0, cap + 1, 1
    while n <= cap:
        if not fits(n):
            bad = n
            break
        good, n = n, n * 2
    if good == 0:
        return 0
    if n > cap and bad == cap + 1 and good < cap:
        n = cap  # the cap itself is worth one try
        if fits(n):
            return n
        bad = n
    while bad - good > max(1, good // 16):
        mid = (good + bad) // 2
        if fits(mid):
            good = mid
        else:
            bad = mid
    return good


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


def _try_step(model: nn.Module, n: int, samples: int, target_len: int, vocab: int, blank: int,
              device: torch.device, amp_dtype: torch.dtype | None) -> int:
    """Forward + backward of ``n`` utterances of ``samples`` samples; returns peak bytes (raises on OOM)."""
    torch.cuda.reset_peak_memory_stats(device)
    audio = torch.randn(n, samples, device=device) * 0.05
    lengths = torch.full((n,), samples, dtype=torch.long, device=device)
    targets = torch.randint(1, vocab, (n, target_len), device=device)
    targets[targets == blank] = (blank + 1) % vocab
    with torch.autocast(device_type=device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        log_probs, out_lens = model(audio, lengths)
    loss = nn.functional.ctc_loss(log_probs.float().transpose(0, 1), targets, out_lens,
                                  torch.full((n,), target_len, dtype=torch.long, device=device),
                                  blank=blank, reduction="sum", zero_infinity=True)
    loss.backward()
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device))


def probe_batch_seconds(model: nn.Module, longest_seconds: float, sample_rate: int, vocab_size: int,
                        device: torch.device | str = "cuda", amp_dtype: torch.dtype | None = torch.float16,
                        memory_fraction: float = 0.85, max_batch_seconds: float = 40_000.0, blank: int = 0,
                        chars_per_second: float = 15.0) -> ProbeResult:
    """Largest padded-seconds budget whose training step fits on ``device`` (a CUDA device).

    ``model`` maps (audio, lengths) to (log-probs, frame lengths), as :class:`asr.model.ASRModel` does; it is
    moved to ``device`` and its gradients are cleared afterwards. ``longest_seconds`` should already include the
    slowest speed perturbation (0.9 makes audio 11 % longer). ``memory_fraction`` leaves room for what the
    probe does not hold (optimizer state, the data loader's pinned batches, allocator fragmentation over a long
    run). The search stops at ``max_batch_seconds`` even if more would fit: past some size a larger batch
    only costs optimizer steps.
    """
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError("batch-size probing measures GPU memory; on a CPU keep the config's max_batch_seconds")
    model = model.to(device).train()
    total = torch.cuda.get_device_properties(device).total_memory
    budget = memory_fraction * total
    samples = int(round(longest_seconds * sample_rate))
    frames = int(model.output_lengths(torch.tensor([samples])).item()) if hasattr(model, "output_lengths") else samples
    target_len = max(1, min(int(chars_per_second * longest_seconds), frames // 2))
    cap = max(1, int(max_batch_seconds // longest_seconds))
    tried: list[tuple[int, bool, int]] = []

    def fits(n: int) -> bool:
        peak = 0
        try:
            peak = _try_step(model, n, samples, target_len, vocab_size, blank, device, amp_dtype)
            ok = peak <= budget
        except RuntimeError as e:  # torch.cuda.OutOfMemoryError is a RuntimeError
            if not _is_oom(e):
                raise
            ok = False
        finally:
            model.zero_grad(set_to_none=True)
            gc.collect()
            torch.cuda.empty_cache()
        tried.append((n, ok, peak))
        log.info("batch probe: %d x %.1f s -> %s (peak %.1f GiB of %.1f)", n, longest_seconds,
                 "fits" if ok else "too large", peak / 2**30, total / 2**30)
        return ok

    good = largest_fitting(fits, cap)
    if good == 0:
        raise RuntimeError(f"one utterance of {longest_seconds:.1f} s does not fit in {device}'s memory: "
                           "lower data.max_duration or the model size")
    peak = max(p for m, ok, p in tried if ok and m == good)
    return ProbeResult(good * longest_seconds, good, longest_seconds, peak, total, tried)
