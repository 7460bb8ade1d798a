import math

import pytest
import torch

from asr.training.batch_sizing import choose_batch, probe_batch_seconds, scale_lr


def memory_bound(limit):
    """A GPU that is never saturated (throughput grows with n) and holds at most ``limit`` utterances."""
    tried = []

    def try_n(n):
        tried.append(n)
        return float(n) if n <= limit else None

    return try_n, tried


@pytest.mark.parametrize("limit,cap", [(1, 100), (37, 1000), (64, 1000), (100, 100), (150, 100), (513, 4096)])
def test_memory_bound_search_finds_the_limit_within_a_sixteenth(limit, cap):
    try_n, tried = memory_bound(limit)
    got = choose_batch(try_n, cap)
    want = min(limit, cap)
    assert 1 <= got <= want and try_n(got) is not None
    assert want - got <= max(1, got // 16)
    assert len(tried) <= 2 * math.log2(cap) + 4  # doubling then bisection, not a linear scan


def test_saturation_stops_doubling_before_memory_does():
    # Throughput saturates at 32 utterances: 64 is only 5 % faster, so 32 is chosen though 512 would fit.
    def try_n(n):
        return None if n > 512 else min(n, 32) * (1.05 if n > 32 else 1.0)

    assert choose_batch(try_n, 4096, min_gain=0.1) == 32


def test_nothing_fits_gives_zero():
    assert choose_batch(lambda n: None, 64) == 0


def test_scale_lr_square_root_rule_with_cap():
    assert scale_lr(1e-3, 4800, 1200) == pytest.approx(2e-3)
    assert scale_lr(1e-3, 300, 1200) == pytest.approx(5e-4)
    assert scale_lr(1e-3, 1e6, 1, max_factor=4) == pytest.approx(4e-3)
    with pytest.raises(ValueError):
        scale_lr(1e-3, 0, 1200)


def test_probe_refuses_a_cpu():
    with pytest.raises(ValueError, match="GPU"):
        probe_batch_seconds(torch.nn.Linear(1, 1), 10.0, 16000, 29, device="cpu")
