"""Training curves: ``curves.png`` (losses, validation WER/CER and learning rate, against steps and against time).

The figures come from the training log (``logs/csv/metrics.csv``, :mod:`asr.training.training_log`: the whole run, across
resumes), so a run can be plotted again afterwards (``asr curves OUTPUT_DIR/logs/csv/metrics.csv
curves.png``). Lightning logs no clock, so :class:`TrainingCurves` adds an ``elapsed_s`` column: seconds trained,
the time :class:`asr.training.run_control.RunControl` counts and checkpoints, so it goes on from a resume without the pause
before it. Rows without it (validation rows) take the time of their step, interpolated; logs written before the
column existed take their clock from the TensorBoard events Lightning writes beside them.

Plotting stays out of the hot path: the callback logs one number per step, draws at a validation end only when
the last drawing took under 2 % of the time since it (1-2 s each on a busy 2-core CPU, so at most once every
50-100 s), and always at the end. A failure to draw is a warning: it never stops training.
"""

from __future__ import annotations

import bisect
import csv
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable

import lightning as L

from asr.errors import UsageError
from asr.evaluation.plotting import PlottingUnavailable, figure_png, new_figure

log = logging.getLogger("asr")

ELAPSED = "elapsed_s"
TRAIN_LOSS = ("train_loss_step", "train_loss")
VAL_LOSS = "val_loss"
ERROR_RATES = (("val_wer", "WER"), ("val_cer", "CER"))
SMOOTH_AFTER = 20  # training-loss points beyond which a smoothed line is drawn over the raw one


def smoothed(values: list[float], log_scale: bool = False) -> list[float]:
    """Exponential moving average over about a 25th of the points, debiased at the start (TensorBoard's
    smoothing), for noisy per-step losses; on a log axis it averages the logs, so a spike does not lift the line."""
    weight = min(0.95, max(0.0, 1 - 25 / max(len(values), 1)))
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = weight * avg + (1 - weight) * (math.log(v) if log_scale else v)
        mean = avg / (1 - weight**i)
        out.append(math.exp(mean) if log_scale else mean)
    return out


def event_files(folder: Path) -> list[Path]:
    """A TensorBoard folder's event files in the order they were written (one per run: a resumed run adds one).

    Their names are ``events.out.tfevents.<unix time>.<host>.<pid>.<counter>``."""

    def written(path: Path) -> tuple[int, int, str]:
        parts = path.name.split(".")
        try:
            return int(parts[3]), int(parts[-1]), path.name
        except (IndexError, ValueError):
            return int(path.stat().st_mtime), 0, path.name

    return sorted(folder.glob("events.out.tfevents.*"), key=written)


def event_stamps(path: Path) -> dict[int, float]:
    """The latest wall-clock time of a logged value at each step of one event file (hyperparameter summaries and
    the ``hp_metric`` placeholder, which Lightning logs at step 0 whenever a run starts, left out)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    stamps: dict[int, float] = {}
    for e in EventFileLoader(str(path)).Load():
        if any(v.tag != "hp_metric" and not v.tag.startswith("_hparams_") for v in e.summary.value):
            stamps[int(e.step)] = max(e.wall_time, stamps.get(int(e.step), e.wall_time))
    return stamps


def tensorboard_clock(metrics_csv: str | os.PathLike) -> dict[int, float]:
    """Seconds trained, by step, from the TensorBoard events beside a CSV log without a clock.

    ``asr train`` writes ``logs/csv/metrics.csv`` and ``logs/tensorboard/``; TensorBoard stamps every value with
    the wall-clock time, so runs logged before ``elapsed_s`` existed still get a time axis. Each run (resume) has
    its own event file: its clock goes on from the time of the step before the first one it logs, so the pause
    between a stop and its resume is left out, and the steps a resume did again take its times. Empty when there
    is no event file.
    """
    folder = Path(metrics_csv).resolve().parent.parent / "tensorboard"
    clock: dict[int, float] = {}
    try:
        for path in event_files(folder):
            stamps = event_stamps(path)
            if not stamps:
                continue
            resumed_at = min(stamps)
            clock = {step: t for step, t in clock.items() if step < resumed_at}
            offset = clock[max(clock)] if clock else 0.0
            started = min(stamps.values())
            clock.update({step: offset + t - started for step, t in stamps.items()})
    except Exception as e:  # noqa: BLE001 - only a fallback: the curves against steps need none of it
        log.debug("no clock from %s: %s", folder, e)
        return {}
    return clock


def read_metrics(path: str | os.PathLike) -> dict[str, list[tuple[int, float, float]]]:
    """Every numeric column of a Lightning ``metrics.csv`` as ``(step, elapsed seconds, value)`` points.

    Empty cells (each row holds only what was logged at that moment) are left out. Elapsed seconds come from the
    ``elapsed_s`` column (or, for older logs, the TensorBoard events beside it: :func:`tensorboard_clock`),
    interpolated by step where a row has none; NaN when there is no clock at all.
    """
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))

    def number(row: dict[str, str], key: str) -> float | None:
        try:
            v = float(row.get(key) or "")
        except ValueError:
            return None
        return v if math.isfinite(v) else None

    clock: dict[int, float] = {}
    for row in rows:
        step, t = number(row, "step"), number(row, ELAPSED)
        if step is not None and t is not None:
            clock[int(step)] = max(t, clock.get(int(step), t))
    if not clock:
        clock = tensorboard_clock(path)
    known = sorted(clock.items())
    steps = [s for s, _ in known]

    def elapsed(step: int) -> float:
        if not known:
            return math.nan
        if step in clock:
            return clock[step]
        if step <= known[0][0]:
            return known[0][1]
        if step >= known[-1][0]:
            return known[-1][1]
        i = bisect.bisect(steps, step)
        (s0, t0), (s1, t1) = known[i - 1], known[i]
        return t0 + (t1 - t0) * (step - s0) / (s1 - s0)

    series: dict[str, list[tuple[int, float, float]]] = {}
    for row in rows:
        step = number(row, "step")
        if step is None:
            continue
        for key in row:
            if key in ("step", ELAPSED, None):
                continue
            v = number(row, key)
            if v is not None:
                series.setdefault(key, []).append((int(step), elapsed(int(step)), v))
    return series


def plot_training_curves(metrics_csv: str | os.PathLike, png: str | os.PathLike, title: str | None = None) -> Path:
    """Draw ``png`` from ``metrics_csv``: loss, validation error rates and learning rate, by step and by time.

    Raises :class:`~asr.evaluation.plotting.PlottingUnavailable` without matplotlib, ``ValueError`` when the log holds no
    curve at all. The file is replaced atomically, so a viewer never shows half a picture.
    """
    series = read_metrics(metrics_csv)
    train_key = next((k for k in TRAIN_LOSS if k in series), None)
    lr_keys = sorted(k for k in series if k.startswith("lr-"))
    if not (train_key or VAL_LOSS in series or any(k in series for k, _ in ERROR_RATES)):
        raise UsageError(f"{metrics_csv}: no loss or error-rate column to plot (columns: {', '.join(series)})")
    timed = any(not math.isnan(p[1]) for points in series.values() for p in points)
    axes_x = [("step", 0, 1.0)] + ([("minutes trained", 1, 60.0)] if timed else [])

    fig = new_figure(13, 3.4 * len(axes_x))
    from matplotlib.ticker import FuncFormatter  # matplotlib is there: new_figure() imported it

    grid = fig.subplots(len(axes_x), 3, squeeze=False)
    for row, (xlabel, col, scale) in enumerate(axes_x):
        loss_ax, err_ax, lr_ax = grid[row]

        def xy(key: str) -> tuple[list[float], list[float]]:
            points = [(p[col] / scale, p[2]) for p in series.get(key, []) if not math.isnan(p[col])]
            return [x for x, _ in points], [y for _, y in points]

        losses = [p[2] for k in (train_key, VAL_LOSS) if k for p in series.get(k, [])]
        log_loss = bool(losses) and min(losses) > 0 and max(losses) / min(losses) > 20
        if train_key:
            x, y = xy(train_key)
            loss_ax.plot(x, y, lw=0.7, alpha=0.35 if len(y) > SMOOTH_AFTER else 0.8, color="C0", label="training loss")
            if len(y) > SMOOTH_AFTER:
                loss_ax.plot(x, smoothed(y, log_loss), lw=1.2, color="C0", label="training loss (smoothed)")
        if VAL_LOSS in series:
            loss_ax.plot(*xy(VAL_LOSS), "o-", ms=3, label="validation loss")
        if log_loss:
            loss_ax.set_yscale("log")
        loss_ax.set_title("CTC loss")
        for key, name in ERROR_RATES:
            x, y = xy(key)
            if y:
                err_ax.plot(x, [100 * v for v in y], "o-", ms=3, label=name)
        wer = series.get("val_wer", [])
        if wer:
            best = min(wer, key=lambda p: p[2])
            err_ax.set_title(f"validation error rates (best WER {100 * best[2]:.2f} % at step {best[0]})")
        else:
            err_ax.set_title("validation error rates")
        err_ax.set_ylabel("%")
        rates = [100 * p[2] for k, _ in ERROR_RATES for p in series.get(k, [])]
        if rates and min(rates) > 0 and max(rates) / min(rates) > 10:
            err_ax.set_yscale("log")
            err_ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        for key in lr_keys:
            lr_ax.plot(*xy(key), lw=1, label=key.removeprefix("lr-"))
        lr_ax.set_title("learning rate")
        lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        for ax in (loss_ax, err_ax, lr_ax):
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3, which="both")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    png = Path(png)
    tmp = png.with_name(f".{png.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(figure_png(fig, dpi=90))
        os.replace(tmp, png)
    finally:
        tmp.unlink(missing_ok=True)
    return png


class TrainingCurves(L.Callback):
    """Logs ``elapsed_s`` every step and draws ``png`` from the training log at validation ends (when cheap) and at
    the end of training, including a stop by an exception. Never raises: a failure to draw is logged as a warning.

    ``clock`` returns the seconds trained so far, read at each step's end: ``asr train`` gives RunControl's, which
    a checkpoint stores, so a resumed run's axis goes on from the value its checkpoint holds, and the steps it
    re-does get times after the ones before it. Without one, the seconds since this run's training started.
    """

    def __init__(self, png: str | os.PathLike, clock: Callable[[], float] | None = None, max_share: float = 0.02):
        self.png = Path(png)
        self.clock = clock
        self.max_share = max_share
        self._t0 = time.monotonic()
        self._last_drawn: float | None = None
        self._last_cost = 1.0  # a first guess (matplotlib's import included): no drawing in the first 50 s
        self._disabled = False  # after a failure at a validation end; the end of training still tries once

    def _elapsed(self) -> float:
        return float(self.clock()) if self.clock else time.monotonic() - self._t0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = self._last_drawn = time.monotonic()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        pl_module.log(ELAPSED, self._elapsed(), on_step=True, on_epoch=False)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or self._disabled:
            return
        now = time.monotonic()
        if self._last_drawn is not None and now - self._last_drawn < self._last_cost / self.max_share:
            return
        self._draw(trainer, at_end=False)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self._draw(trainer, at_end=True)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if trainer.is_global_zero:
            self._draw(trainer, at_end=True)

    def _draw(self, trainer: L.Trainer, at_end: bool) -> None:
        started = time.monotonic()
        try:
            metrics = self._flush_log(trainer)
            plot_training_curves(
                metrics,
                self.png,
                title=f"{self.png.parent.name}: step {trainer.global_step}, epoch {trainer.current_epoch}",
            )
        except Exception as e:  # noqa: BLE001 - a picture must never cost a training run
            if at_end or not self._disabled:
                reason = str(e) if isinstance(e, PlottingUnavailable) else f"{type(e).__name__}: {e}"
                log.warning("%s not written: %s", self.png, reason)
            self._disabled = True
            return
        finally:
            self._last_drawn = time.monotonic()
            self._last_cost = self._last_drawn - started
        if at_end:
            log.info("wrote %s (%.1f s)", self.png, self._last_cost)

    @staticmethod
    def _flush_log(trainer: L.Trainer) -> Path:
        """Write the training log's pending rows and return its path."""
        from asr.training.training_log import MetricsLog

        for logger in trainer.loggers:
            if isinstance(logger, MetricsLog):
                logger.save()
                return logger.path
        raise ValueError("no training log (asr.training.training_log.MetricsLog): nothing to plot from")


def main(argv: list[str] | None = None) -> int:
    """``asr curves METRICS_CSV [PNG]``: draw the curves of a run that has ended (or is running)."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help") or len(args) > 2:
        print(__doc__.split("\n")[0] + "\nusage: asr curves METRICS_CSV [PNG]", file=sys.stderr)
        return 2
    png = args[1] if len(args) > 1 else "curves.png"
    print(plot_training_curves(args[0], png))
    return 0
