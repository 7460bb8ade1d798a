"""Which numeric precision a run trains in: ``trainer.precision: auto`` resolved for the device at hand, and how
the CPU treats subnormal floats while it trains."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from asr.errors import ConfigError


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


def _smallest_subnormals(n: int) -> torch.Tensor:
    # float32's smallest subnormal (bit pattern 1), made from integers so that no flush mode can touch it
    return torch.ones(n, dtype=torch.int32).view(torch.float32)


def subnormals_flushed_everywhere() -> bool:
    """Whether arithmetic on subnormals gives zero in this thread and in every torch CPU thread an operation uses.

    One element-wise product large enough that torch splits it over all its threads: each thread's share comes
    out zero only if that thread flushes.
    """
    n = max(1, torch.get_num_threads()) * (1 << 17)
    return not bool((_smallest_subnormals(n) * 1.0).ne(0).any())


def flush_subnormals() -> bool:
    """Flush subnormal floats to zero from now on, in this thread and in every thread it starts later.

    Why: on x86 each arithmetic instruction that meets a subnormal operand or result takes a microcode assist of
    around a hundred cycles, and CTC training on real speech makes many of them (the recurrent backward pass
    multiplies long chains of small gradients). On the 2-core dev machine the mini_librispeech config trained
    1.40x more steps in two minutes with them flushed (171 against 122; recipes/mini_librispeech/RESULTS.md),
    where the benchmark's random-noise batches showed no such gap. Values below 1.2e-38 carry nothing a model
    learns from. GPU arithmetic is unchanged, and inference measured the same either way.

    The CPU keeps this mode per thread and a new thread copies its creator's, so it reaches torch's worker
    threads only if it is set before torch's first parallel operation starts them: ``asr train`` calls this
    first. Returns :func:`subnormals_flushed_everywhere` (False: torch's threads were already running).
    """
    torch.set_flush_denormal(True)
    return subnormals_flushed_everywhere()


@contextmanager
def subnormals_flushed() -> Iterator[bool]:
    """:func:`flush_subnormals` for a block, in this thread (back to IEEE's gradual underflow after it); yields
    whether torch's other threads flush too. For :func:`asr.training.train.train` called from Python, where
    the flush mode of the rest of the caller's program is not training's to change."""
    try:
        yield flush_subnormals()
    finally:
        torch.set_flush_denormal(False)
