"""How long PyTorch's OpenMP threads spin before they sleep: short by default, a little longer for ``asr train``.

OpenMP threads with no work spin before they sleep (libgomp: 300,000 rounds unless told otherwise). When another
process runs OpenMP threads on the same cores (a second job, a test runner, even a niced one), spinning threads
take each other's time slices, and an LSTM, whose threads meet at every time step, ran 2 instead of 500
audio-seconds per second on 2 cores (scripts/bench_contention.py, docs/benchmarks.md). So ``import asr`` sets
``GOMP_SPINCOUNT`` to :data:`SHARED`.

Training is the exception. Its bf16 steps leave gaps between parallel regions that 1,000 rounds do not cover, so
the threads fall asleep and are woken thousands of times a step: on the 2-core AMX dev machine, alone, the
mini_librispeech config trained 119-122 steps in two minutes at 1,000 rounds against 163-171 at libgomp's
default, and 165 already at 3,000 (recipes/mini_librispeech/RESULTS.md). Beside another OpenMP process the
longer the spin, the worse: 66 / 44 / 23 / 9 audio-s/s of training at 1,000 / 3,000 / 10,000 / 30,000 rounds.
:data:`TRAINING` is the shortest spin that got the whole gain. A training run is the long job that has the
machine to itself; inference and serving keep the short spin.

Only defaults: a user's own ``GOMP_SPINCOUNT`` wins, and the runtime reads the variable once, when torch loads,
so both are set before anything of asr imports torch.
"""

from __future__ import annotations

import os
import sys

SHARED = "1000"
TRAINING = "3000"
# Read when asr is first imported, before set_default() writes the variable.
_CHOSEN_BY_USER = "GOMP_SPINCOUNT" in os.environ


def set_default() -> None:
    """:data:`SHARED`, unless the user set a value or torch (and so its OpenMP runtime) is loaded already."""
    if "torch" not in sys.modules:
        os.environ.setdefault("GOMP_SPINCOUNT", SHARED)


def set_for_training() -> None:
    """:data:`TRAINING` for this process and those it starts (DDP ranks), unless the user chose a value or torch
    is loaded already."""
    if not _CHOSEN_BY_USER and "torch" not in sys.modules:
        os.environ["GOMP_SPINCOUNT"] = TRAINING
