"""asr: recurrent-network (RNN / LSTM / GRU) CTC speech recognition.

The data flow is one-way and each stage has its own module:
manifest -> dataset -> batch -> features -> model -> log-probs -> decoding -> text -> metrics.

From Python (as whisper does it)::

    import asr
    from asr.evaluation.evaluate import evaluate
    from asr.inference.transcribe import transcribe

    model = asr.load_model("exp/synth/model.pt")
    for t in transcribe(model, ["a.wav", "long_recording.flac"], word_timestamps=True):
        print(t.text, t.to_dict()["segments"])
    print(evaluate(model, "data/synth/test.jsonl").summary()["wer"])

``asr.load_model`` is imported on first use (PEP 562), so ``import asr`` and ``asr --help`` stay fast. Unlike
whisper, ``asr.inference.transcribe`` and ``asr.evaluation.evaluate`` name the modules, not the functions: importing a submodule sets
the package attribute of the same name, so a lazy function there would be replaced by its module as soon as
anything imported ``asr.inference.transcribe``.
"""

import os
import sys
from typing import Any

# OpenMP threads with no work spin before they sleep (libgomp: 300,000 rounds unless told otherwise). When another
# process runs OpenMP threads on the same cores (a second job, a test runner, even a niced one), spinning threads
# take each other's time slices, and an LSTM, whose threads meet at every time step, ran 2 instead of 500
# audio-seconds per second on 2 cores (scripts/bench_contention.py, docs/benchmarks.md). A short spin costs
# nothing on an idle machine. Only a default: a user's own setting wins, and it must be in place before torch
# loads its OpenMP runtime, so it is set here, before anything of asr imports torch.
if "torch" not in sys.modules:
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")

__version__ = "0.1.0"

_LAZY = {"load_model": "asr.model.file"}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'asr' has no attribute {name!r}")
