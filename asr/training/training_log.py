"""The training log, ``logs/csv/metrics.csv``: one file for a whole run, across its resumes.

Lightning's ``CSVLogger`` deletes the ``metrics.csv`` it finds when a run starts, so the log of a resumed run (and
``curves.png``, drawn from it) held only the part after the last resume. :class:`MetricsLog` writes the same
format (a header of the sorted column names, one row per logging call, empty cells for what that call did not log)
but a resumed run *continues* the file: everything the earlier runs logged before the step this run logs first is
kept, and everything from that step on is dropped. Those rows were logged after the checkpoint this run resumes
from (a crash after ``last.ckpt``, or a resume from an older checkpoint), so this run does those steps again and
logs them anew: each step is in the log once, with the values of the run that led to the final model.

Rows are appended; the file is rewritten (through a temporary file and a rename, so a crash leaves the old or the
new file, never half of one) only when a column appears, and at the first write of a resumed run.

TensorBoard's folder (``logs/tensorboard/``) gets one event file per run and keeps the earlier ones, so nothing is
lost there, but the steps done again were shown twice (TensorBoard reads every file in the folder). A resumed run's
:class:`TensorBoardLog` marks the step it logs first as a restart (the ``SessionLog.START`` event that
``SummaryWriter(purge_step=...)`` writes), which makes TensorBoard hide what earlier files hold from that step on:
the same rule as the CSV log's, applied by the reader.
"""

from __future__ import annotations

import csv
import os
from argparse import Namespace
from pathlib import Path
from typing import Any, Mapping

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

STEP = "step"


def read_rows(path: str | os.PathLike) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of a ``metrics.csv`` (empty cells as empty strings); nothing when there is no file."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = [{k: v for k, v in row.items() if k is not None} for row in reader]
            return list(reader.fieldnames or []), rows
    except FileNotFoundError:
        return [], []


def row_step(row: Mapping[str, Any]) -> int | None:
    try:
        return int(float(row.get(STEP) or ""))
    except ValueError:
        return None


def kept_before(rows: list[dict[str, str]], step: int) -> list[dict[str, str]]:
    """The rows logged before ``step`` (those at or after it are re-done by the run resumed there); rows without
    a step are kept, as nothing re-does them."""
    return [r for r in rows if (s := row_step(r)) is None or s < step]


def write_rows(path: Path, columns: list[str], rows: list[Mapping[str, Any]]) -> None:
    """Replace ``path`` with ``rows`` under ``columns``, atomically."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class MetricsLog(Logger):
    """Lightning logger writing ``path`` (``OUTPUT_DIR/logs/csv/metrics.csv``) in ``CSVLogger``'s format.

    ``resume``: this run resumes an earlier one in the same folder, so it continues that run's file instead of
    starting a new one (see the module's docstring). Only rank 0 writes.
    """

    def __init__(self, path: str | os.PathLike, resume: bool = False):
        super().__init__()
        self.path = Path(path)
        self.resume = resume
        self._pending: list[dict[str, Any]] = []  # logged, not written yet
        self._columns: list[str] | None = None  # the file's header once this run has written it

    @property
    def name(self) -> str:
        return self.path.parent.name

    @property
    def version(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:
        return str(self.path.parent.parent)

    @property
    def log_dir(self) -> str:
        return str(self.path.parent)

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        """Nothing: ``config.yaml`` beside the logs holds the whole configuration."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        row = {k: v.item() if hasattr(v, "item") else v for k, v in metrics.items()}
        row[STEP] = step if step is not None else len(self._pending)
        self._pending.append(row)

    @rank_zero_only
    def save(self) -> None:
        """Write what was logged since the last call (Lightning calls this after every logging step)."""
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        new_columns = {k for row in rows for k in row}
        if self._columns is None:  # this run's first write
            earlier: list[dict[str, str]] = []
            old_columns: list[str] = []
            if self.resume:
                old_columns, earlier = read_rows(self.path)
                earlier = kept_before(earlier, min(row[STEP] for row in rows))
            self._columns = sorted(new_columns.union(old_columns))
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_rows(self.path, self._columns, [*earlier, *rows])
        elif not new_columns.issubset(self._columns):
            _, written = read_rows(self.path)
            self._columns = sorted(new_columns.union(self._columns))
            write_rows(self.path, self._columns, [*written, *rows])
        else:
            with open(self.path, "a", newline="", encoding="utf-8") as f:
                csv.DictWriter(f, fieldnames=self._columns).writerows(rows)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()


class TensorBoardLog(TensorBoardLogger):
    """Lightning's ``TensorBoardLogger`` in ``save_dir/name`` (no version folder); when ``resume``, the first step
    this run logs is marked as a restart, so TensorBoard hides the earlier runs' values from that step on."""

    def __init__(self, save_dir: str | os.PathLike, name: str = "tensorboard", resume: bool = False):
        super().__init__(save_dir, name=name, version="")
        self._restart_pending = resume

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        if self._restart_pending and step is not None:
            from tensorboard.compat.proto.event_pb2 import Event, SessionLog

            writer = self.experiment._get_file_writer()  # as Lightning's own log_hyperparams reaches it
            writer.add_event(Event(step=step, session_log=SessionLog(status=SessionLog.START)))
            self._restart_pending = False
        super().log_metrics(metrics, step)
