"""Schedules and stopping that do not depend on the dataset's size.

The same config must warm up over the same share of the run and end at its end-of-schedule learning rate on a
small or a large dataset, whether epochs, steps or a time budget end it, and say why it stopped.
"""

import json
from pathlib import Path

import lightning as L
import pytest
from conftest import TINY_MODEL

from asr.cli import main
from asr.model.file import load_model
from asr.training.config import ConfigError, OptimConfig, load_config
from asr.training.ctc_module import LRSchedule
from asr.training.run_control import RunControl, still_improving
from asr.training.train import train

pytestmark = pytest.mark.usefixtures("one_thread")


# --- the schedule, unit -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("total", [20, 2000])
def test_warmup_and_decay_are_fractions_of_the_run_whatever_its_length(total):
    schedule = LRSchedule(OptimConfig(warmup=0.1, min_lr_ratio=0.05), lambda: total)
    lrs = [schedule(s) for s in range(total + 1)]
    peak = lrs.index(max(lrs))
    assert peak == pytest.approx(0.1 * total, abs=1)  # warm-up ends at 10 % of the run, 2 steps or 200
    assert lrs[0] < 0.1 and all(a <= b for a, b in zip(lrs[:peak], lrs[1 : peak + 1]))
    assert lrs[total // 2 + total // 20] == pytest.approx(0.525, abs=0.02)  # half-way through the cosine
    assert lrs[-1] == pytest.approx(0.05)  # the end-of-schedule learning rate


def test_a_time_budget_ends_warm_up_and_decay_on_a_dataset_too_large_for_it():
    control = RunControl(max_minutes=10)
    schedule = LRSchedule(OptimConfig(warmup=0.05, min_lr_ratio=0.05), lambda: 100_000, control)
    control.elapsed = 30.0  # 5 % of the time budget at step 10 of 100 000: warm-up is over
    assert schedule(10) == pytest.approx(1.0)
    control.elapsed = 600.0  # the budget is spent at step 300: the schedule is at its end
    assert schedule(300) == pytest.approx(0.05)
    assert schedule.position(300) == 1.0


def test_old_configs_with_warmup_steps_keep_their_meaning():
    config = load_config(None, ["optim.warmup_steps=300"])
    assert config.optim.warmup_fraction is None
    schedule = LRSchedule(config.optim, lambda: 1000)
    assert schedule(0) == pytest.approx(1 / 300) and schedule(299) == pytest.approx(1.0)
    assert schedule(1000) == pytest.approx(config.optim.min_lr_ratio)
    assert load_config(None).optim.warmup_fraction == 0.05  # neither set: 5 % of the run


def test_warmup_given_both_ways(tmp_path):
    both = tmp_path / "both.yaml"
    both.write_text("optim:\n  warmup: 0.1\n  warmup_steps: 300\n")
    with pytest.raises(ConfigError, match="optim.warmup .* and optim.warmup_steps .* two forms of one setting"):
        load_config(both)
    # overrides apply in order: the later form replaces the earlier one
    later = load_config(None, ["optim.warmup=0.1", "optim.warmup_steps=3"]).optim
    assert (later.warmup, later.warmup_steps) == (None, 3)
    fraction = tmp_path / "fraction.yaml"
    fraction.write_text("optim:\n  warmup: 0.1\n")
    # an override of one form replaces the other form from the file
    assert load_config(fraction, ["optim.warmup_steps=3"]).optim.warmup_steps == 3
    steps = tmp_path / "steps.yaml"
    steps.write_text("optim:\n  warmup_steps: 300\n")
    assert load_config(steps, ["optim.warmup=0.2"]).optim.warmup_fraction == 0.2
    with pytest.raises(ConfigError, match=r"optim.warmup is a fraction of the run, in \[0, 1\)"):
        load_config(None, ["optim.warmup=5"])


# --- early stopping and the still-falling warning, unit -----------------------------------------------------------
def test_early_stopping_counts_patience_across_a_resume():
    first = RunControl(patience=3, min_delta=0.01)
    assert [first.record_validation(s, w) for s, w in [(10, 0.5), (20, 0.4), (30, 0.395)]] == [False] * 3
    assert first.wait == 1  # 0.395 is not 0.01 better than 0.4
    resumed = RunControl(patience=3, min_delta=0.01)
    resumed.load_state_dict(first.state_dict())
    assert resumed.record_validation(40, 0.41) is False
    assert resumed.record_validation(50, 0.40) is True  # the third validation in a row without improvement
    assert resumed.best_wer == 0.4 and [v[0] for v in resumed.validations] == [10, 20, 30, 40, 50]
    assert RunControl(patience=0).record_validation(1, 0.5) is False  # off


def test_patience_counts_only_once_the_model_has_learned_something():
    control = RunControl(patience=2)
    # the all-blank plateau: 100 % (or worse) for as long as it lasts is never "not improving"
    assert [control.record_validation(s, w) for s, w in [(10, 1.0), (20, 1.0), (30, 1.2), (40, 1.0)]] == [False] * 4
    assert control.wait == 0 and not control.counting()
    assert control.record_validation(50, 0.8) is False  # learning: counting starts here
    assert control.counting() and [control.record_validation(s, 0.85) for s in (60, 70)] == [False, True]
    # without the condition (null) the plateau itself runs the patience out
    old = RunControl(patience=2, start_below_wer=None)
    assert [old.record_validation(s, 1.0) for s in (10, 20, 30)] == [False, False, True]
    # a minimum share of the schedule: nothing counts before it, even below 100 %
    late = RunControl(patience=1, min_progress=0.5)
    late.progress = 0.2
    assert [late.record_validation(s, w) for s, w in [(10, 0.5), (20, 0.6), (30, 0.7)]] == [False] * 3
    late.progress = 0.5
    assert late.record_validation(40, 0.7) is True
    # the state a resume reads keeps the validations, so a resumed run knows it has learned
    resumed = RunControl(patience=2)
    resumed.load_state_dict(control.state_dict())
    assert resumed.counting()


@pytest.mark.parametrize(
    "option, message",
    [
        ("trainer.early_stopping_below_wer=0", "early_stopping_below_wer must be a WER above 0"),
        ("trainer.early_stopping_min_progress=1.0", r"early_stopping_min_progress is a share of the schedule"),
    ],
)
def test_early_stopping_conditions_are_checked(option, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [option])


def test_still_falling_wer_at_the_end_gives_a_warning_with_the_numbers():
    falling = [(100, 60.0, 0.50), (800, 480.0, 0.30), (1000, 600.0, 0.20)]
    warning = still_improving(falling, 1000)
    assert "30.00 % at step 800 (80 % of the run) -> 20.00 % at step 1000, 33 % lower" in warning
    assert "--max-minutes" in warning and "--max-epochs" in warning
    assert still_improving([(100, 60.0, 0.5), (800, 480.0, 0.21), (1000, 600.0, 0.2)], 1000) is None
    assert still_improving([(1000, 600.0, 0.2)], 1000) is None  # one validation says nothing
    # validated too rarely to have a point in the last fifth's start: compared with the first validation
    assert "at step 500 (50 % of the run)" in still_improving([(500, 1.0, 0.5), (1000, 2.0, 0.3)], 1000)


# --- the same config on a small and a large dataset, end to end ---------------------------------------------------
class RecordLR(L.Callback):
    def __init__(self):
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def repeated(manifest, path, times, keep=None):
    lines = manifest.read_text().splitlines()[:keep]
    base = manifest.parent
    out = []
    for _ in range(times):
        for line in lines:
            d = json.loads(line)
            d["audio_filepath"] = str(base / d["audio_filepath"])
            out.append(json.dumps(d))
    path.write_text("\n".join(out) + "\n")
    return path


SAME_CONFIG = [
    *TINY_MODEL,
    "optim.warmup=0.25",
    "optim.lr=0.002",
    "optim.min_lr_ratio=0.1",
    "trainer.max_epochs=2",
    "data.max_batch_seconds=8",
]


@pytest.mark.parametrize("times,keep", [(1, 4), (5, None)], ids=["4-utterances", "80-utterances"])
def test_the_same_config_ends_its_schedule_on_a_small_and_a_large_dataset(tiny_corpus, tmp_path, times, keep):
    manifest = repeated(tiny_corpus["train"], tmp_path / "train.jsonl", times, keep)
    record = RecordLR()
    path = train(
        load_config(None, SAME_CONFIG), str(manifest), str(tiny_corpus["dev"]), tmp_path / "exp", callbacks=[record]
    )
    meta = load_model(path).metadata
    assert meta["stop_reason"] == "epoch cap (trainer.max_epochs=2)"
    assert meta["schedule_position"] == 1.0 and meta["final_lr"] == pytest.approx(0.002 * 0.1)
    steps = meta["steps"]
    assert len(record.lrs) == steps and steps >= (4 if keep else 20)
    peak = record.lrs.index(max(record.lrs))
    assert peak == pytest.approx(0.25 * steps, abs=1)  # a quarter of the run either way
    assert max(record.lrs) == pytest.approx(0.002, rel=0.15)
    assert len(meta["validations"]) == 2 and meta["validations"][-1]["step"] == steps


def train_cli(corpus, out, *options):
    return main(
        [
            "train",
            "--train-manifest",
            str(corpus["train"]),
            "--val-manifest",
            str(corpus["dev"]),
            "--output-dir",
            str(out),
            *options,
            *TINY_MODEL,
            "optim.warmup=0.05",
        ]
    )


def test_max_minutes_alone_lifts_the_epoch_cap_and_ends_at_the_budget(tiny_corpus, tmp_path, caplog):
    caplog.set_level("INFO", logger="asr")
    # trainer.max_epochs is 30 by default; 0.01 min stops after a batch or more however fast this machine is
    assert train_cli(tiny_corpus, tmp_path, "--max-minutes", "0.01") == 0
    meta = load_model(tmp_path / "model.pt").metadata
    assert meta["config"]["trainer"]["max_epochs"] == -1
    assert "the config's epoch cap (trainer.max_epochs=30) is lifted" in caplog.text
    assert meta["stop_reason"] == "time budget (trainer.max_minutes=0.01)"
    assert meta["schedule_position"] == 1.0 and meta["final_lr"] == pytest.approx(1e-3 * 0.05)
    assert "training stopped: time budget" in caplog.text


def test_max_minutes_with_max_epochs_keeps_the_cap(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(
        "asr.training.train.train", lambda config, *a, **k: seen.setdefault("config", config) and "m.pt"
    )
    main(
        [
            "train",
            "--train-manifest",
            "t",
            "--val-manifest",
            "v",
            "--output-dir",
            str(tmp_path),
            "--max-minutes",
            "5",
            "--max-epochs",
            "3",
        ]
    )
    assert seen["config"].trainer.max_epochs == 3 and seen["config"].trainer.max_minutes == 5
    seen.clear()
    main(
        [
            "train",
            "--train-manifest",
            "t",
            "--val-manifest",
            "v",
            "--output-dir",
            str(tmp_path),
            "--max-minutes",
            "5",
            "trainer.max_epochs=4",
        ]
    )
    assert seen["config"].trainer.max_epochs == 4


def test_max_steps_is_a_stop_reason(tiny_corpus, tmp_path):
    assert train_cli(tiny_corpus, tmp_path, "--max-epochs", "3", "trainer.max_steps=3") == 0
    meta = load_model(tmp_path / "model.pt").metadata
    assert meta["stop_reason"] == "max_steps (trainer.max_steps=3)" and meta["steps"] == 3
    assert meta["schedule_position"] == 1.0


def test_early_stopping_stops_says_so_and_a_resume_respects_it(tiny_corpus, tmp_path, capsys):
    # min_delta 1.0 (100 points): no validation can improve on the first one
    # (and null: patience counts from the first validation, though this tiny model stays at 100 % WER)
    early = [
        "trainer.early_stopping_patience=1",
        "trainer.early_stopping_min_delta=1.0",
        "trainer.early_stopping_below_wer=null",
    ]
    assert train_cli(tiny_corpus, tmp_path, "--max-epochs", "5", *early) == 0
    meta = load_model(tmp_path / "model.pt").metadata
    assert meta["stop_reason"].startswith("early stopping (no val_wer improvement for 1 validations")
    assert len(meta["validations"]) == 2 and meta["schedule_position"] < 1.0
    assert train_cli(tiny_corpus, tmp_path, "--max-epochs", "5", "--resume", *early) == 2
    assert "this run stopped early: val_wer did not improve for 1 validations" in capsys.readouterr().err
    # with early stopping off the same run trains on, from where it stopped
    assert train_cli(tiny_corpus, tmp_path, "--max-epochs", "3", "--resume") == 0
    meta = load_model(tmp_path / "model.pt").metadata
    assert meta["stop_reason"] == "epoch cap (trainer.max_epochs=3)" and len(meta["validations"]) == 3


def test_validation_on_a_clock_comes_inside_epochs_and_picks_the_best_of_them(tiny_corpus, tmp_path):
    # A per-epoch validation comes once per epoch whatever the corpus; val_check_minutes validates on the clock
    # instead. A microsecond interval passes after every batch, so every step is validated (clock-independent).
    assert train_cli(tiny_corpus, tmp_path / "epochs", "--max-epochs", "2") == 0
    per_epoch = load_model(tmp_path / "epochs" / "model.pt").metadata
    assert len(per_epoch["validations"]) == 2
    assert train_cli(tiny_corpus, tmp_path / "clock", "--max-epochs", "2", "trainer.val_check_minutes=1e-8") == 0
    clock = load_model(tmp_path / "clock" / "model.pt").metadata
    steps = [v["step"] for v in clock["validations"]]
    assert clock["steps"] == per_epoch["steps"] > 2 and steps == list(range(1, clock["steps"] + 1))
    best = min(clock["validations"], key=lambda v: v["val_wer"])
    assert clock["best_val_wer"] == pytest.approx(best["val_wer"])
    assert f"step{best['step']:06d}" in clock["checkpoint"]
    with pytest.raises(ConfigError, match="val_check_minutes must be positive"):
        load_config(None, ["trainer.val_check_minutes=0"])


@pytest.mark.parametrize("stop", [["--max-epochs", "2"], ["--max-epochs", "3", "trainer.max_steps=5"]])
def test_the_last_step_of_a_run_is_always_validated(tiny_corpus, tmp_path, stop):
    # validation on a clock that never comes round in this run: the end of the run (epoch cap or max_steps)
    # is still validated, so the final weights can be the exported ones
    assert train_cli(tiny_corpus, tmp_path, *stop, "trainer.val_check_minutes=60") == 0
    meta = load_model(tmp_path / "model.pt").metadata
    assert [v["step"] for v in meta["validations"]] == [meta["steps"]]
    assert meta["best_val_wer"] == pytest.approx(meta["validations"][0]["val_wer"])


def test_ranks_validate_on_the_clock_together():
    # Lightning's clock-based validation asks each rank's own clock; RunControl's per-batch agreement makes every
    # rank validate when any rank's clock says so (ranks that disagreed would hang in each other's collectives)
    import time
    from types import SimpleNamespace

    import torch

    def rank(last_val_age: float, other_rank_due: float) -> SimpleNamespace:
        other = torch.tensor([0.0, 0.0, other_rank_due], dtype=torch.float64)
        strategy = SimpleNamespace(root_device=torch.device("cpu"), reduce=lambda t, reduce_op: torch.maximum(t, other))
        return SimpleNamespace(
            received_sigterm=False,
            strategy=strategy,
            world_size=2,
            should_stop=False,
            _val_check_time_interval=60.0,
            _last_val_time=time.monotonic() - last_val_age,
        )

    for age, other_due, validates in ((10.0, 1.0, True), (10.0, 0.0, False), (61.0, 0.0, True)):
        trainer, control = rank(age, other_due), RunControl()
        control._started = time.monotonic()
        control._check(trainer)
        assert (trainer._last_val_time == float("-inf")) == validates


def test_speech_commands_config_on_a_tiny_corpus_trains_past_the_plateau(tiny_corpus, tmp_path):
    """The bundled Speech Commands config (patience 8) on a corpus thousands of times smaller than its own: while
    validation WER is still 100 % early stopping does not fire, and the run ends at its epoch cap. With patience
    counted from the first validation and no minimum share of the schedule (the behaviour before), the same run
    is stopped on the plateau."""
    conf = Path(__file__).resolve().parents[1] / "recipes" / "speech_commands" / "conf" / "train.yaml"
    options = ["--config", str(conf), "--max-epochs", "10", "data.max_duration=30", "data.num_workers=0"]
    assert train_cli(tiny_corpus, tmp_path / "new", *options) == 0
    meta = load_model(tmp_path / "new" / "model.pt").metadata
    trainer = meta["config"]["trainer"]
    assert (trainer["early_stopping_patience"], trainer["early_stopping_min_progress"]) == (8, 0.5)  # the recipe's
    wers = [v["val_wer"] for v in meta["validations"]]
    assert len(wers) == 10 and min(wers) >= 1.0  # the plateau, all run long
    assert meta["stop_reason"] == "epoch cap (trainer.max_epochs=10)"
    before = ["trainer.early_stopping_below_wer=null", "trainer.early_stopping_min_progress=0"]
    assert train_cli(tiny_corpus, tmp_path / "old", *options, *before) == 0
    old = load_model(tmp_path / "old" / "model.pt").metadata
    assert old["stop_reason"].startswith("early stopping (no val_wer improvement for 8 validations")
    assert len(old["validations"]) == 9
