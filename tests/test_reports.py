"""Reports people look at: curves.png from the training log, and the HTML page beside `asr evaluate --report`."""

import csv
import json
import logging
import re
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.cli import main
from asr.data.tokenizer import CharTokenizer
from asr.evaluation.report_html import (
    aligned_words,
    duration_buckets,
    grouping_fields,
    groups_by_field,
    html_path_for,
    render_html,
)
from asr.model.features import FeatureConfig
from asr.model.file import save_model
from asr.model.network import ASRModel, ModelDimensions
from asr.training.curves import TrainingCurves, plot_training_curves, read_metrics

pytest.importorskip("matplotlib")
from PIL import Image  # noqa: E402  (matplotlib's dependency)

COLUMNS = [
    "elapsed_s",
    "epoch",
    "lr-AdamW/pg1",
    "step",
    "train_loss_epoch",
    "train_loss_step",
    "val_cer",
    "val_loss",
    "val_wer",
]


def write_metrics(path, epochs=3, steps_per_epoch=4, timed=True):
    """A metrics.csv laid out as Lightning's CSVLogger writes it: one row per logging call, empty cells elsewhere."""
    rows, step = [], 0
    for epoch in range(epochs):
        for _ in range(steps_per_epoch):
            rows.append({"lr-AdamW/pg1": 1e-3, "step": step})
            rows.append(
                {
                    "elapsed_s": 10.0 * step if timed else "",
                    "epoch": epoch,
                    "step": step,
                    "train_loss_step": 300.0 / (step + 1),
                }
            )
            step += 1
        rows.append(
            {
                "epoch": epoch,
                "step": step - 1,
                "val_loss": 200.0 / (epoch + 1),
                "val_wer": 1.0 / (epoch + 1),
                "val_cer": 0.5 / (epoch + 1),
            }
        )
        rows.append({"epoch": epoch, "step": step - 1, "train_loss_epoch": 250.0 / (epoch + 1)})
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return path


def test_curves_against_steps_and_time_from_a_lightning_style_log(tmp_path):
    metrics = write_metrics(tmp_path / "metrics.csv")
    series = read_metrics(metrics)
    assert [p[0] for p in series["val_wer"]] == [3, 7, 11]
    assert [p[1] for p in series["val_wer"]] == [30.0, 70.0, 110.0]  # validation rows take their step's time
    png = plot_training_curves(metrics, tmp_path / "curves.png")
    w, h = Image.open(png).size
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    untimed = plot_training_curves(write_metrics(tmp_path / "old.csv", timed=False), tmp_path / "old.png")
    w2, h2 = Image.open(untimed).size
    assert w2 == w and h2 < 0.6 * h  # no clock in the log: the row of plots against time is left out
    assert not list(tmp_path.glob(".*tmp*"))  # written through a temporary file, which is gone


def test_an_older_log_takes_its_clock_from_the_tensorboard_events_beside_it(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    (tmp_path / "logs" / "csv").mkdir(parents=True)
    metrics = write_metrics(tmp_path / "logs" / "csv" / "metrics.csv", timed=False)
    writer = SummaryWriter(str(tmp_path / "logs" / "tensorboard"))
    for step in range(12):
        writer.add_scalar("train_loss_step", 1.0, step, walltime=1000.0 + 5 * step)
    writer.close()
    assert [p[1] for p in read_metrics(metrics)["val_wer"]] == [15.0, 35.0, 55.0]


def test_an_older_resumed_log_takes_a_clock_without_the_pause_before_the_resume(tmp_path):
    """One event file per run: a crash after step 7, a resume an hour later from the checkpoint of step 5 (so
    steps 6-7 are done again); Lightning logs its hp_metric placeholder at step 0 in every run."""
    from torch.utils.tensorboard import SummaryWriter

    (tmp_path / "logs" / "csv").mkdir(parents=True)
    metrics = write_metrics(tmp_path / "logs" / "csv" / "metrics.csv", timed=False)
    for start, steps in ((1000.0, range(0, 8)), (9000.0, range(6, 12))):
        writer = SummaryWriter(str(tmp_path / "logs" / "tensorboard"))
        writer.add_scalar("hp_metric", -1, walltime=start - 10)
        for step in steps:
            writer.add_scalar("train_loss_step", 1.0, step, walltime=start + 5 * (step - steps[0]))
        writer.close()
    assert [p[1] for p in read_metrics(metrics)["val_wer"]] == [15.0, 30.0, 50.0]


def test_a_log_with_nothing_to_plot_is_a_clear_error(tmp_path):
    (tmp_path / "m.csv").write_text("epoch,step,lr-AdamW/pg1\n0,0,0.001\n")
    with pytest.raises(ValueError, match="no loss or error-rate column"):
        plot_training_curves(tmp_path / "m.csv", tmp_path / "c.png")


class FakeTrainer:
    is_global_zero, sanity_checking, global_step, current_epoch = True, False, 7, 1

    def __init__(self, metrics_file=None):
        from asr.training.training_log import MetricsLog

        self.loggers = [] if metrics_file is None else [MetricsLog(metrics_file)]


def test_a_failure_to_plot_is_a_warning_never_an_exception(tmp_path, caplog):
    callback = TrainingCurves(tmp_path / "curves.png")
    with caplog.at_level(logging.WARNING, logger="asr"):
        callback.on_fit_end(FakeTrainer(), None)  # no CSV log at all
        callback.on_exception(FakeTrainer(tmp_path / "missing.csv"), None, RuntimeError("boom"))
    assert not (tmp_path / "curves.png").exists()
    assert "curves.png not written" in caplog.text and "no training log" in caplog.text

    write_metrics(tmp_path / "metrics.csv")
    callback.on_fit_end(FakeTrainer(tmp_path / "metrics.csv"), None)
    assert (tmp_path / "curves.png").exists()


def test_training_writes_curves_and_logs_its_clock(trained_model):
    assert (trained_model / "curves.png").stat().st_size > 10_000
    with open(trained_model / "logs" / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    clock = [float(r["elapsed_s"]) for r in rows if r.get("elapsed_s")]
    assert clock and clock == sorted(clock) and clock[0] >= 0


# --- the evaluation report --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_and_audio(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    torch.manual_seed(0)
    tokenizer = CharTokenizer()
    dims = ModelDimensions(vocab_size=len(tokenizer), hidden_size=8, num_layers=1, conv_channels=2)
    save_model(d / "model.pt", ASRModel(dims, FeatureConfig()), tokenizer)
    rng = np.random.default_rng(0)
    for i in range(6):
        sf.write(d / f"{i}.wav", 0.1 * rng.standard_normal(4000 * (i + 1)), 16000)
    return d


EVIL = "<script>alert(1)</script>"


def evaluate_with_report(d, tmp_path, extra_lines=(), flags=()):
    lines = [
        {
            "audio_filepath": str(d / f"{i}.wav"),
            "duration": 0.25 * (i + 1),
            "text": text,
            "speaker": spk,
            "id": f"u{i}",
            "rate": 0.5 + i,
        }
        for i, (text, spk) in enumerate(
            [
                ("hello world", "ann"),
                ("good morning", "ann"),
                (f"a {EVIL} b", "bob"),
                ("turn it off", "bob"),
                ("one two", EVIL),
                ("three", EVIL),
            ]
        )
    ]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(x) + "\n" for x in [*lines, *extra_lines]))
    report = tmp_path / "r.json"
    rc = main(
        [
            "evaluate",
            "--model",
            str(d / "model.pt"),
            "--manifest",
            str(tmp_path / "m.jsonl"),
            "--report",
            str(report),
            *flags,
        ]
    )
    return rc, report


def test_evaluate_writes_a_self_contained_html_report_beside_the_json(model_and_audio, tmp_path, capsys):
    rc, report = evaluate_with_report(model_and_audio, tmp_path)
    assert rc == 0
    data = json.loads(report.read_text())  # still the strict JSON report
    assert all("duration" in u for u in data["utterances"])
    page = (tmp_path / "r.html").read_text()
    assert f"report: {tmp_path / 'r.html'}" in capsys.readouterr().out
    for section in ("summary", "by-duration", "by-speaker", "confusions", "worst", "posteriors"):
        assert f'<section id="{section}">' in page
    assert 'id="by-id"' not in page and 'id="by-rate"' not in page  # unique ids and continuous numbers: no table
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', page)) == 3
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', page, re.I)  # nothing fetched: opens offline
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert" in page  # a transcript or speaker name is shown as text, never run


def test_without_matplotlib_the_json_and_a_plotless_page_are_still_written(
    model_and_audio, tmp_path, monkeypatch, caplog
):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if it were not installed
    with caplog.at_level(logging.WARNING, logger="asr"):
        rc, report = evaluate_with_report(model_and_audio, tmp_path)
    assert rc == 0 and json.loads(report.read_text())["num_utterances"] == 6
    page = (tmp_path / "r.html").read_text()
    assert "matplotlib is not installed (pip install &#x27;asr-rnn-ctc[reports]&#x27;)" in page
    assert "data:image/png" not in page and '<section id="worst">' in page
    assert "pip install 'asr-rnn-ctc[reports]'" in caplog.text
    with pytest.raises(ImportError, match=re.escape("asr-rnn-ctc[reports]")):
        plot_training_curves(write_metrics(tmp_path / "metrics.csv"), tmp_path / "c.png")


def test_unreadable_audio_is_listed_on_the_page_and_never_plotted(model_and_audio, tmp_path, monkeypatch):
    plotted = []
    monkeypatch.setattr("asr.evaluation.report_html.posterior_png", lambda loaded, path: plotted.append(path) or b"png")
    missing = {"audio_filepath": str(tmp_path / "gone.wav"), "duration": 1.0, "text": "lost words"}
    rc, _ = evaluate_with_report(model_and_audio, tmp_path, [missing], ["--allow-unreadable"])
    assert rc == 0
    page = (tmp_path / "r.html").read_text()
    assert "1 unreadable (counted as deletions)" in page and "Unreadable audio" in page
    assert "m.jsonl:7" in page.split('<section id="by-duration">')[0]  # named in the summary, by file and line
    assert len(plotted) == 3 and missing["audio_filepath"] not in plotted


def test_a_failed_posterior_plot_leaves_the_tables_and_says_why(model_and_audio, tmp_path, monkeypatch, caplog):
    def fail(loaded, path):
        raise RuntimeError("out of memory")

    monkeypatch.setattr("asr.evaluation.report_html.posterior_png", fail)
    with caplog.at_level(logging.WARNING, logger="asr"):
        rc, report = evaluate_with_report(model_and_audio, tmp_path)
    assert rc == 0 and json.loads(report.read_text())["num_utterances"] == 6
    page = (tmp_path / "r.html").read_text()
    assert "No posterior plots: RuntimeError: out of memory" in page and '<section id="by-speaker">' in page
    assert "No posterior plots" in caplog.text


def test_alignment_marks_substitutions_deletions_and_insertions():
    assert aligned_words("the cat sat on the mat", "the bat sat the mat now") == [
        ("ok", "the", "the"),
        ("sub", "cat", "bat"),
        ("ok", "sat", "sat"),
        ("del", "on", ""),
        ("ok", "the", "the"),
        ("ok", "mat", "mat"),
        ("ins", "", "now"),
    ]
    assert aligned_words("a b", "") == [("del", "a", ""), ("del", "b", "")]
    page = render_html(
        {
            "wer": 0.5,
            "utterances": [
                {
                    "source": "m:1",
                    "reference": "the cat sat",
                    "hypothesis": "the bat sat x",
                    "word_errors": 2,
                    "reference_words": 3,
                    "reference_chars": 11,
                    "char_errors": 3,
                }
            ],
        }
    )
    assert '<span class="w sub"><span class="r">cat</span><span class="h">bat</span></span>' in page
    assert '<span class="w ins"><span class="r">·</span><span class="h">x</span></span>' in page


def utterance(duration, errors, words=10, **extra):
    return {
        "duration": duration,
        "hypothesis": "x",
        "word_errors": errors,
        "reference_words": words,
        "char_errors": errors,
        "reference_chars": 5 * words,
        "extra": extra,
    }


def test_groups_by_duration_quantiles_and_by_fields_that_group():
    utts = [
        utterance(d, e, speaker=f"s{i % 3}", id=f"u{i}", rate=100 + i, take=i % 2, pitch=0.1 * i)
        for i, (d, e) in enumerate(zip(np.linspace(1, 20, 40), range(40)))
    ]
    buckets = duration_buckets(utts)
    assert [b.utterances for b in buckets] == [10, 10, 10, 10]
    assert sum(b.word_errors for b in buckets) == sum(range(40))
    assert buckets[0].name.startswith("<") and buckets[-1].name.startswith("≥")
    assert grouping_fields(utts) == ["speaker", "take"]  # not the unique id, the 40 rates, the float pitch
    by_speaker = groups_by_field(utts, "speaker")
    assert [g.wer for g in by_speaker] == sorted((g.wer for g in by_speaker), reverse=True)
    assert duration_buckets(utts[:3])[0].utterances == 3  # too few for quantiles: one group
    tied = [utterance(d, 1) for d in [1.0] * 9 + [1.5] * 11 + [2.0] * 10 + [3.0] * 10]
    assert [b.utterances for b in duration_buckets(tied)] == [9, 11, 10, 10]  # cuts move to where values change


@pytest.mark.parametrize("given, html", [("r.json", "r.html"), ("r", "r.html"), ("r.html", "r.html.html")])
def test_html_report_path(tmp_path, given, html):
    assert html_path_for(tmp_path / given) == tmp_path / html
