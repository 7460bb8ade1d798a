"""Which numeric precision a run trains in: ``trainer.precision: auto`` resolved for the device at hand."""

from __future__ import annotations

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
