"""`data.max_batch_seconds: auto` in training: the config it needs, the CPU fallback, the learning-rate rule and
the agreement between ranks (the GPU probe itself is measured on a GPU: scripts/gpu_batch_sizing.py)."""

import math

import pytest
import torch
from conftest import TINY_MODEL

from asr.cli import main
from asr.model.file import load_model
from asr.training.batch_sizing import choose_auto_batch, longest_training_seconds, steps_cap
from asr.training.config import ConfigError, load_config


def test_auto_is_parsed_and_needs_a_reference():
    config = load_config(None, ["data.max_batch_seconds=auto", "data.reference_batch_seconds=1200"])
    assert config.data.max_batch_seconds == "auto" and config.data.reference_batch_seconds == 1200.0
    assert load_config(None, ["data.max_batch_seconds=600"]).data.max_batch_seconds == 600.0
    with pytest.raises(ConfigError, match="data.max_batch_seconds: auto needs data.reference_batch_seconds"):
        load_config(None, ["data.max_batch_seconds=auto"])
    with pytest.raises(ConfigError, match="must be a number of seconds or 'auto', got 'big'"):
        load_config(None, ["data.max_batch_seconds=big", "data.reference_batch_seconds=1200"])


def test_on_a_gpu_the_probed_budget_scales_the_lr_by_the_square_root_and_ranks_take_the_minimum():
    ranks = [4800.0, 4100.0]  # what two ranks' probes found; every rank must train with the same
    choice = choose_auto_batch(True, lambda limit: 4800.0, 1200.0, 1e-3, agree=lambda x: min([x, *ranks]))
    assert choice.batch_seconds == 4100.0
    assert choice.lr == pytest.approx(1e-3 * math.sqrt(4100 / 1200))
    assert choice.how == "probed on cuda"
    capped = choose_auto_batch(True, lambda limit: 40_000.0, 1200.0, 1e-3)
    assert capped.lr == pytest.approx(4e-3)  # at most 4x (16x the batch)


def test_a_small_corpus_keeps_its_minimum_of_steps_per_epoch():
    # 3 h of audio (the synth corpus), at least 100 steps per epoch: at most 106 s per batch on one GPU, half
    # that per rank on two, a quarter with two batches accumulated per step; never below the longest utterance.
    assert steps_cap(10_638.0, 100) == pytest.approx(106.38)
    assert steps_cap(10_638.0, 100, ranks=2, accumulate=2) == pytest.approx(26.595)
    assert steps_cap(300.0, 100, longest_seconds=12.0) == 12.0
    limits = []

    def probe(limit):  # memory would fit far more than the cap: the probe searches only up to it
        limits.append(limit)
        return min(16_000.0, limit - 3.0)

    choice = choose_auto_batch(True, probe, 40.0, 3e-3, cap_seconds=steps_cap(10_638.0, 100))
    assert limits == [pytest.approx(106.38)]
    assert choice.batch_seconds == pytest.approx(103.38)
    assert choice.lr == pytest.approx(3e-3 * math.sqrt(103.38 / 40))
    assert choice.how == "probed on cuda, capped by data.auto_min_steps_per_epoch"
    large = choose_auto_batch(True, probe, 1200.0, 1e-3, cap_seconds=steps_cap(10_000_000.0, 100))
    assert large.batch_seconds == 16_000.0 and large.how == "probed on cuda"  # memory binds, not the cap
    with pytest.raises(ConfigError, match="auto_min_steps_per_epoch must be 1 or more"):
        load_config(None, ["data.auto_min_steps_per_epoch=0"])


def test_on_a_cpu_the_reference_is_used_without_probing():
    def probe(limit):
        raise AssertionError("no probe on a CPU")

    choice = choose_auto_batch(False, probe, 30.0, 2e-3)
    assert (choice.batch_seconds, choice.lr, choice.how) == (30.0, 2e-3, "CPU fallback")


def test_the_probe_uses_the_longest_training_utterance_at_the_slowest_speed():
    assert longest_training_seconds([3.0, 12.0, 7.5], None) == 12.0
    assert longest_training_seconds([3.0, 12.0], [0.9, 1.0, 1.1]) == pytest.approx(12.0 / 0.9)


def test_auto_on_cpu_trains_with_the_reference_and_records_it(tiny_corpus, tmp_path, caplog):
    caplog.set_level("INFO", logger="asr")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rc = main(
            [
                "train",
                "--train-manifest",
                str(tiny_corpus["train"]),
                "--val-manifest",
                str(tiny_corpus["dev"]),
                "--output-dir",
                str(tmp_path),
                *TINY_MODEL,
                "trainer.accelerator=cpu",
                "trainer.max_steps=2",
                "data.max_batch_seconds=auto",
                "data.reference_batch_seconds=9",
            ]
        )
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    assert "data.max_batch_seconds: auto on a CPU: training with data.reference_batch_seconds = 9 s" in caplog.text
    meta = load_model(tmp_path / "model.pt").metadata
    assert meta["batch"] == {"batch_seconds": 9.0, "lr": 1e-3, "how": "CPU fallback"}
    assert meta["config"]["data"]["max_batch_seconds"] == "auto"
