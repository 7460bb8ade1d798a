"""The training log (logs/csv/metrics.csv) a resumed run continues: the rows it re-does replace the stale ones."""

import csv

import torch

from asr.training.training_log import MetricsLog


def rows_of(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def log_steps(log, steps, **extra):
    for step in steps:
        log.log_metrics({"train_loss_step": torch.tensor(float(step)), **extra}, step=step)
        log.save()


def test_a_column_appearing_mid_run_keeps_the_earlier_rows(tmp_path):
    log = MetricsLog(tmp_path / "csv" / "metrics.csv")
    log_steps(log, range(3))
    log.log_metrics({"val_wer": 0.5}, step=2)
    log_steps(log, range(3, 5))
    log.finalize("success")
    header, rows = rows_of(log.path)
    assert header == ["step", "train_loss_step", "val_wer"]
    assert [(r["step"], r["train_loss_step"], r["val_wer"]) for r in rows] == [
        ("0", "0.0", ""),
        ("1", "1.0", ""),
        ("2", "2.0", ""),
        ("2", "", "0.5"),
        ("3", "3.0", ""),
        ("4", "4.0", ""),
    ]
    assert [p.name for p in log.path.parent.iterdir()] == ["metrics.csv"]  # no temporary file left behind


def test_a_resumed_run_continues_the_log_from_the_first_step_it_logs(tmp_path):
    first = MetricsLog(tmp_path / "metrics.csv")
    log_steps(first, range(8), epoch=0)
    first.log_metrics({"val_wer": 0.5}, step=4)  # logged after the checkpoint of step 4: done again
    first.save()

    resumed = MetricsLog(tmp_path / "metrics.csv", resume=True)
    resumed.finalize("failed")  # a crash before it logged anything leaves the log alone
    assert len(rows_of(tmp_path / "metrics.csv")[1]) == 9
    log_steps(resumed, range(4, 10))  # resumed from step 4's checkpoint, without logging the epoch any more
    header, rows = rows_of(tmp_path / "metrics.csv")
    assert header == ["epoch", "step", "train_loss_step", "val_wer"]  # the earlier runs' columns stay
    assert [r["step"] for r in rows] == [str(s) for s in range(10)]
    assert [r["epoch"] for r in rows] == ["0"] * 4 + [""] * 6  # steps 4-9 are the resumed run's
    assert not any(r["val_wer"] for r in rows)


def test_a_new_run_in_the_same_folder_starts_a_new_log(tmp_path):
    log_steps(MetricsLog(tmp_path / "metrics.csv"), range(5))
    log_steps(MetricsLog(tmp_path / "metrics.csv"), range(2))
    assert [r["step"] for r in rows_of(tmp_path / "metrics.csv")[1]] == ["0", "1"]
