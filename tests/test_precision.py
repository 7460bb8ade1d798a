"""Mixed precision on CPU, the EMA of the weights, and checkpoint averaging."""

import csv
import math
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from conftest import TINY_MODEL
from torch import nn

from asr.cli import main
from asr.model.file import load_model
from asr.training.averaging import EMACallback, average_checkpoints
from asr.training.config import ConfigError, load_config


@pytest.fixture(scope="module")
def bf16_ema_run(tiny_corpus, tmp_path_factory):
    """Two epochs in bf16-mixed with an EMA, exporting the average of the two checkpoints (one run, three checks)."""
    out = tmp_path_factory.mktemp("bf16")
    rc = main(
        [
            "train",
            "--train-manifest",
            str(tiny_corpus["train"]),
            "--val-manifest",
            str(tiny_corpus["dev"]),
            "--output-dir",
            str(out),
            "--max-epochs",
            "2",
            "trainer.precision=bf16-mixed",
            "trainer.ema_decay=0.9",
            "trainer.average_checkpoints=2",
            *TINY_MODEL,
        ]
    )
    assert rc == 0
    return out


def test_bf16_mixed_training_on_cpu_has_a_finite_loss_and_a_loadable_model(bf16_ema_run):
    with open(bf16_ema_run / "logs" / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    losses = [float(r["train_loss_step"]) for r in rows if r.get("train_loss_step")]
    assert losses and all(math.isfinite(x) for x in losses)
    loaded = load_model(bf16_ema_run / "model.pt")
    assert all(torch.isfinite(v).all() for v in loaded.model.state_dict().values() if v.is_floating_point())


def test_exported_model_is_the_mean_of_the_best_checkpoints_ema_weights(bf16_ema_run):
    loaded = load_model(bf16_ema_run / "model.pt")
    names = loaded.metadata["averaged_checkpoints"]
    assert len(names) == 2
    ckpts = [torch.load(bf16_ema_run / "checkpoints" / n, map_location="cpu", weights_only=True) for n in names]
    exported = loaded.model.state_dict()
    ema_mean = {k: (ckpts[0]["ema_state_dict"][k] + ckpts[1]["ema_state_dict"][k]) / 2 for k in ckpts[0]["state_dict"]}
    for k, v in exported.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, ema_mean[f"model.{k}"])
    raw_last = torch.load(bf16_ema_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)[
        "state_dict"
    ]
    assert any(not torch.equal(v, raw_last[f"model.{k}"]) for k, v in exported.items())


class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, 1, bias=False)
        self.norm = nn.BatchNorm1d(1)  # a float buffer (running_mean) and an integer one (num_batches_tracked)

    def set(self, w: float) -> None:
        with torch.no_grad():
            self.linear.weight.fill_(w)
            self.norm.running_mean.fill_(w)
            self.norm.num_batches_tracked.fill_(int(w))


def run_ema(cb: EMACallback, module: Tiny, weights: list[float]) -> SimpleNamespace:
    """Fit-start at ``weights[0]``, then one optimizer step to each following value."""
    trainer = SimpleNamespace(global_step=0)
    module.set(weights[0])
    cb.on_fit_start(trainer, module)
    for w in weights[1:]:
        module.set(w)
        trainer.global_step += 1
        cb.on_train_batch_end(trainer, module, None, None, 0)
    return trainer


def test_ema_of_a_linearly_moving_weight_lags_by_decay_over_one_minus_decay():
    cb, module = EMACallback(0.9), Tiny()
    run_ema(cb, module, [0.0, 2.0])
    assert cb.ema["linear.weight"].item() == pytest.approx(0.1 * 0.0 + 0.9 * 2.0)  # warm-up: decay_0 = 1/10

    cb, module = EMACallback(0.9), Tiny()
    run_ema(cb, module, [0.5 * t for t in range(301)])
    # Steady state of ema_t = d * ema_{t-1} + (1 - d) * a * t: a * t - a * d / (1 - d).
    assert cb.ema["linear.weight"].item() == pytest.approx(150.0 - 0.5 * 9, abs=1e-3)
    state = cb.state_dict_for(module)
    assert state.keys() == module.state_dict().keys()
    assert state["norm.running_mean"].item() == pytest.approx(150.0 - 4.5, abs=1e-3)
    assert state["norm.num_batches_tracked"].item() == 150  # integers are copied, not averaged


def test_ema_settles_on_constant_weights_and_skips_batches_without_an_optimizer_step():
    cb, module = EMACallback(0.9), Tiny()
    trainer = run_ema(cb, module, [10.0] + [3.0] * 200)
    assert cb.ema["linear.weight"].item() == pytest.approx(3.0, abs=1e-6)
    updates = cb.num_updates
    cb.on_train_batch_end(trainer, module, None, None, 0)  # same global_step: an accumulation batch
    assert cb.num_updates == updates == 200


def test_ema_weights_are_swapped_in_for_validation_and_restored_from_a_checkpoint():
    cb, module = EMACallback(0.9), Tiny()
    trainer = run_ema(cb, module, [0.0, 1.0, 2.0, 3.0])
    ema = cb.ema["linear.weight"].item()
    assert ema != 3.0
    cb.on_validation_start(trainer, module)
    assert module.linear.weight.item() == ema
    checkpoint = {"state_dict": module.state_dict()}
    cb.on_save_checkpoint(trainer, module, checkpoint)  # mid-validation: the raw weights are still saved as such
    assert checkpoint["state_dict"]["linear.weight"].item() == 3.0
    cb.on_validation_end(trainer, module)
    assert module.linear.weight.item() == 3.0
    checkpoint = {"state_dict": module.state_dict()}
    cb.on_save_checkpoint(trainer, module, checkpoint)
    assert checkpoint["ema_state_dict"].keys() == checkpoint["state_dict"].keys()
    assert checkpoint["ema_state_dict"]["linear.weight"].item() == ema

    for load_first in (True, False):  # Lightning restores callbacks before or after on_fit_start, by strategy
        resumed, module2 = EMACallback(0.9), Tiny()
        if load_first:
            resumed.on_load_checkpoint(trainer, module2, checkpoint)
            resumed.on_fit_start(trainer, module2)
        else:
            resumed.on_fit_start(trainer, module2)
            resumed.on_load_checkpoint(trainer, module2, checkpoint)
        assert resumed.ema["linear.weight"].item() == ema and resumed.num_updates == 3


def test_average_checkpoints_takes_the_mean_preferring_ema_weights(tmp_path):
    a, b = tmp_path / "a.ckpt", tmp_path / "b.ckpt"
    torch.save(
        {
            "state_dict": {
                "w": torch.tensor([1.0, 2.0]),
                "h": torch.tensor([1.0], dtype=torch.bfloat16),
                "n": torch.tensor(3),
            }
        },
        a,
    )
    torch.save(
        {
            "state_dict": {
                "w": torch.tensor([100.0, 100.0]),
                "h": torch.tensor([0.0], dtype=torch.bfloat16),
                "n": torch.tensor(0),
            },
            "ema_state_dict": {
                "w": torch.tensor([3.0, 6.0]),
                "h": torch.tensor([2.0], dtype=torch.bfloat16),
                "n": torch.tensor(7),
            },
        },
        b,
    )
    avg = average_checkpoints([str(a), str(b)])
    assert torch.equal(avg["w"], torch.tensor([2.0, 4.0]))
    assert avg["h"].dtype == torch.bfloat16 and avg["h"].item() == 1.5
    assert avg["n"].item() == 7
    torch.save({"state_dict": {"w": torch.tensor([1.0, 2.0])}}, tmp_path / "c.ckpt")
    with pytest.raises(ValueError, match="cannot average"):
        average_checkpoints([str(a), str(tmp_path / "c.ckpt")])


def test_average_checkpoints_config_rejects_a_negative_count():
    with pytest.raises(ConfigError, match="average_checkpoints"):
        load_config(None, ["trainer.average_checkpoints=-1"])


def test_precision_auto_on_cpu_follows_amx(monkeypatch):
    import asr.training.precision

    monkeypatch.setattr(asr.training.precision, "cpu_has_amx_bf16", lambda: True)
    assert asr.training.precision.resolve_precision("auto", "cpu") == "bf16-mixed"
    monkeypatch.setattr(asr.training.precision, "cpu_has_amx_bf16", lambda: False)
    assert asr.training.precision.resolve_precision("auto", "cpu") == "32-true"
    assert asr.training.precision.resolve_precision("32-true", "cpu") == "32-true"


def test_precision_auto_and_the_fp16_on_cpu_guard():
    from asr.training.config import ConfigError
    from asr.training.precision import resolve_precision

    assert resolve_precision("auto", "gpu") == "16-mixed"  # cuDNN RNNs run fp16 under any CUDA autocast
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    with pytest.raises(ConfigError, match="float16 runs hundreds of times slower"):
        resolve_precision("16-mixed", "cpu")
