"""Interrupted and resumed training ends where an uninterrupted run does, batch for batch.

The runs use the tiny model with every augmentation that needs no noise files and dropout, on CPU with
``num_workers=0``; a run is stopped mid-epoch by a real SIGINT (Ctrl-C) or SIGTERM sent to this process.
"""

import csv
import os
import signal

import lightning as L
import pytest
import torch
from conftest import TINY_MODEL

from asr.training.config import ConfigError, load_config
from asr.training.curves import read_metrics
from asr.training.train import TrainingStopped, train

SETTINGS = [
    *TINY_MODEL,
    "data.max_batch_seconds=10",
    "augment.speed_perturb=true",
    "augment.vtlp=true",
    "model.dropout=0.2",
    "trainer.max_epochs=3",
]


class SendSignal(L.Callback):
    """Sends ``signum`` to this process as training step ``at_step`` starts (as a terminal or scheduler would)."""

    def __init__(self, signum: int, at_step: int):
        self.signum, self.at_step = signum, at_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at_step:
            os.kill(os.getpid(), self.signum)


class RecordBatches(L.Callback):
    def __init__(self):
        self.seen: list[tuple[int, list[int]]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen.append((trainer.current_epoch, list(batch["indices"])))


pytestmark = pytest.mark.usefixtures("one_thread")


def run(corpus, out, *overrides, resume=False, callbacks=()):
    config = load_config(None, [*SETTINGS, *overrides])
    return train(config, str(corpus["train"]), str(corpus["dev"]), out, resume=resume, callbacks=callbacks)


def last_state(out):
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return ckpt


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=lambda m: f"{k}: {m}")


@pytest.fixture(scope="module")
def uninterrupted(tiny_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    seen = RecordBatches()
    run(tiny_corpus, out, "trainer.max_steps=10", callbacks=[seen])
    return last_state(out), seen.seen


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_stopped_mid_epoch_and_resumed_matches_an_uninterrupted_run(tiny_corpus, tmp_path, uninterrupted, signum, code):
    whole, whole_seen = uninterrupted
    first, second = RecordBatches(), RecordBatches()
    with pytest.raises(TrainingStopped) as stopped:
        run(tiny_corpus, tmp_path, "trainer.max_steps=10", callbacks=[SendSignal(signum, 2), first])
    assert stopped.value.exit_code == code and "--resume" in str(stopped.value)
    interrupted = last_state(tmp_path)
    assert interrupted["global_step"] == 3  # saved at the batch boundary after the signal, mid-epoch
    assert not (tmp_path / "model.pt").exists()

    run(tiny_corpus, tmp_path, "trainer.max_steps=10", resume=True, callbacks=[second])
    # the same batches in the same order: none replayed, none skipped, across the epoch boundary
    assert first.seen + second.seen == whole_seen
    resumed = last_state(tmp_path)
    assert resumed["global_step"] == whole["global_step"] == 10
    assert_same_weights(resumed["state_dict"], whole["state_dict"])
    lr = [g["lr"] for g in resumed["optimizer_states"][0]["param_groups"]]
    assert lr == pytest.approx([g["lr"] for g in whole["optimizer_states"][0]["param_groups"]])


def test_last_checkpoint_is_written_at_every_epoch_end(tiny_corpus, tmp_path):
    class LastAtEpochEnd(L.Callback):
        def __init__(self):
            self.steps = []

        def on_train_epoch_start(self, trainer, pl_module):
            path = tmp_path / "checkpoints" / "last.ckpt"
            if path.exists():
                self.steps.append(torch.load(path, map_location="cpu", weights_only=True)["global_step"])

    probe = LastAtEpochEnd()
    # with a learning rate of 0 the WER never improves, so no top-k checkpoint after the first: before, last.ckpt
    # then stayed at epoch 0
    run(tiny_corpus, tmp_path, "optim.lr=0.0", callbacks=[probe])
    per_epoch = probe.steps[0]
    assert per_epoch > 0 and probe.steps == [per_epoch, 2 * per_epoch]
    final = last_state(tmp_path)
    assert final["global_step"] == 3 * per_epoch
    assert final["callbacks"]["RunControl"]["epochs_done"] == 3


def test_resuming_a_finished_run_says_so(tiny_corpus, tmp_path):
    run(tiny_corpus, tmp_path, "trainer.max_epochs=1")
    with pytest.raises(ConfigError, match="already trained 1 epochs .*; nothing to do.*pass a larger --max-epochs"):
        run(tiny_corpus, tmp_path, "trainer.max_epochs=1", resume=True)


class CrashAt(L.Callback):
    """Raises as batch ``batch_idx`` of epoch ``epoch`` starts: a crash, with no checkpoint written for it."""

    def __init__(self, epoch: int, batch_idx: int):
        self.epoch, self.batch_idx = epoch, batch_idx

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == self.batch_idx:
            raise RuntimeError("simulated crash")


def test_the_log_and_curves_of_a_stopped_crashed_and_resumed_run_cover_it_whole(tiny_corpus, tmp_path):
    """Stopped by Ctrl-C mid-epoch, resumed, crashed in its second epoch (last.ckpt is then the first epoch's end,
    so the steps logged since are done again), resumed to the end: the log curves.png is drawn from holds every
    step once, from the first to the last, with the re-done steps' values, and a clock that never goes back."""
    with pytest.raises(TrainingStopped):
        run(tiny_corpus, tmp_path, callbacks=[SendSignal(signal.SIGINT, 2)])
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tiny_corpus, tmp_path, resume=True, callbacks=[CrashAt(epoch=1, batch_idx=2)])
    crashed_at = last_state(tmp_path)["global_step"]  # the first epoch's end
    run(tiny_corpus, tmp_path, resume=True)
    steps = last_state(tmp_path)["global_step"]
    assert steps > crashed_at + 2

    with open(tmp_path / "logs" / "csv" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    train = [r for r in rows if r["train_loss_step"]]
    assert [int(r["step"]) for r in train] == list(range(steps))
    lr_key = next(k for k in rows[0] if k.startswith("lr-"))
    assert [int(r["step"]) for r in rows if r[lr_key]] == list(range(steps))
    validations = [int(r["step"]) for r in rows if r["val_wer"]]  # the stop validates too, at step 2
    assert validations == sorted(set(validations)) and len(validations) >= 3 and validations[-1] == steps - 1
    clock = [float(r["elapsed_s"]) for r in train]
    assert clock[0] >= 0 and all(a < b for a, b in zip(clock, clock[1:]))
    assert [int(r["step"]) for r in rows] == sorted(int(r["step"]) for r in rows)  # in order, as logged

    series = read_metrics(tmp_path / "logs" / "csv" / "metrics.csv")
    assert [p[0] for p in series["train_loss_step"]] == list(range(steps))
    assert (tmp_path / "curves.png").exists()

    # TensorBoard keeps each run's event file; the restarts it is told of hide the steps that were done again
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "logs" / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("train_loss_step")] == list(range(steps))
