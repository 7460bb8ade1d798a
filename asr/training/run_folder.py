"""The run folder of `asr train` (``--output-dir``) and the checkpoints it resumes from.

A folder that already holds a run is refused unless the run is resumed (``--resume``) or replaced
(``--overwrite``, which removes the old run's files first): writing a second run over the first silently replaced
its ``model.pt`` and ``config.yaml`` and mixed its checkpoints with ``-v1`` copies of the new run's.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from asr.errors import UsageError

log = logging.getLogger("asr")


def read_checkpoint(path: str | os.PathLike) -> dict:
    """A Lightning training checkpoint, or one line saying what the file is instead (an asr model file, a file
    cut short, a pickle that holds code, bytes that are no PyTorch file): ``--resume-from`` takes only these."""
    from asr.model.file import FORMAT, read_torch_file

    checkpoint = read_torch_file(path, "checkpoint")
    if isinstance(checkpoint, dict) and checkpoint.get("format") == FORMAT:
        raise UsageError(
            f"{path}: an asr model file, not a training checkpoint: resume from DIR/checkpoints/last.ckpt "
            "(--resume or --resume-from), or start a new run from these weights with --init-from"
        )
    if not isinstance(checkpoint, dict) or "pytorch-lightning_version" not in checkpoint:
        raise UsageError(f"{path}: not a Lightning training checkpoint (no pytorch-lightning_version in it)")
    return checkpoint


# What a run writes into its output folder: an existing one is refused without --resume, and --overwrite removes
# exactly these (nothing else a user keeps there).
RUN_FILES = (
    "model.pt",
    "checkpoints",
    "config.yaml",
    "logs",
    "curves.png",
    "skipped_train.txt",
    "skipped_val.txt",
    "tokenizer.model",
    "MODEL_CARD.md",
    "lightning_logs",
)


def launch_rank() -> int:
    """This process's global rank as the launcher set it (torchrun: RANK; SLURM: SLURM_PROCID; Lightning's own
    DDP launcher: LOCAL_RANK of the processes it starts), before any process group exists; 0 when not launched."""
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def prepare_output_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Make ``out`` ready for a run: refuse a file (or a path under one) and a folder that holds a run already,
    unless resuming it or ``overwrite`` (then the old run's files are removed first, so none of its checkpoints
    or logs mixes with the new run's).

    Under DDP every rank starts ``asr train``; only rank 0 judges and clears the folder (and writes the run's
    files), so another rank never finds rank 0's fresh ``config.yaml`` and takes it for an old run."""
    if resume and overwrite:
        raise UsageError("--overwrite and --resume contradict each other: resume the run, or replace it")
    for p in (out, *out.parents):
        if p.exists() or p.is_symlink():
            if not p.is_dir():
                where = "is a file" if p == out else f"lies under {p}, which is a file"
                raise UsageError(f"{out}: --output-dir {where}; give a folder")
            break
    if resume or launch_rank() != 0:
        out.mkdir(parents=True, exist_ok=True)
        return
    found = [name for name in RUN_FILES if (out / name).exists()]
    if found and not overwrite:
        raise UsageError(
            f"{out}: holds a run already ({', '.join(found)}); pass --resume to continue it, or --overwrite to "
            "replace it (its model, checkpoints, config and logs are deleted first)"
        )
    for name in found:
        target = out / name
        log.info("--overwrite: removing %s", target)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    out.mkdir(parents=True, exist_ok=True)
