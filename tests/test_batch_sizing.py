import math

import pytest
import torch

from asr.batch_sizing import largest_fitting, probe_batch_seconds, scale_lr


@pytest.mark.parametrize("limit,cap", [(1, 100), (37, 1000), (64, 1000), (100, 100), (150, 100), (513, 4096)])
def test_largest_fitting_finds_the_limit_within_a_sixteenth(limit, cap):
    tried = []

    def fits(n):
        tried.append(n)
        return n <= limit

    got = largest_fitting(fits, cap)
    want = min(limit, cap)
    assert got <= want and fits(got)
    assert want - got <= max(1, got // 16)
    assert len(tried) <= 2 * math.log2(cap) + 4  # doubling then bisection, not a linear scan


def test_largest_fitting_zero_when_nothing_fits():
    assert largest_fitting(lambda n: False, 64) == 0


def test_scale_lr_square_root_rule_with_cap():
    assert scale_lr(1e-3, 4800, 1200) == pytest.approx(2e-3)
    assert scale_lr(1e-3, 300, 1200) == pytest.approx(5e-4)
    assert scale_lr(1e-3, 1e6, 1, max_factor=4) == pytest.approx(4e-3)
    with pytest.raises(ValueError):
        scale_lr(1e-3, 0, 1200)


def test_probe_refuses_a_cpu():
    with pytest.raises(ValueError, match="GPU"):
        probe_batch_seconds(torch.nn.Linear(1, 1), 10.0, 16000, 29, device="cpu")
