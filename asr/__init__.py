"""asr: recurrent-network (RNN / LSTM / GRU) CTC speech recognition.

From Python, as whisper does it (see :mod:`asr.inference.api`)::

    import asr

    model = asr.load_model("exp/synth/model.pt")       # device "auto"
    t = model.transcribe("a.wav")                       # also a list of paths, bytes, or samples + sample_rate=
    print(t.text, [(w.word, w.start, w.end) for w in t.words])
    print(asr.evaluate(model, "data/synth/test.jsonl").summary()["wer"])

The package is in wings, one per stage of the data flow, each importing only from the wings below it
(checked by import-linter, ``make lint``): ``data`` (audio, manifests, tokenizers, batches) < ``model`` and
``decoding`` < ``inference`` < ``evaluation`` < ``training``, ``serving`` and ``corpora`` < ``cli``. Every error
bad input can cause derives from :class:`asr.ASRError` (:mod:`asr.errors`).

The names below are imported on first use (PEP 562), so ``import asr`` and ``asr --help`` load no torch.
"""

from typing import Any

from asr import openmp

# before anything of asr imports torch: the OpenMP runtime reads its spin setting once, when torch loads
openmp.set_default()

__version__ = "0.1.0"

# name -> the module that defines it
_LAZY = {
    "load_model": "asr.inference.api",
    "transcribe": "asr.inference.api",
    "Model": "asr.inference.api",
    "Transcript": "asr.inference.transcribe",
    "evaluate": "asr.evaluation.evaluate",
    "train": "asr.training.train",
    "open_stream": "asr.inference.streaming",
    "load_config": "asr.training.config",
    "GreedyDecoder": "asr.decoding.greedy",
    "BeamSearchDecoder": "asr.decoding.beam_search",
    "ASRError": "asr.errors",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # looked up once
        return value
    raise AttributeError(f"module 'asr' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
