"""Tuning the LM's decoding weights on a dev set: one model pass, then many cheap re-decodes (``asr lm tune``).

The model runs once over the dev manifest; :class:`CapturingDecoder` keeps each utterance's log-probs, and each
point of the (lm_weight, word_score) search re-decodes them with the beam search. The best point is written as
JSON that ``--lm-params`` reads back (:meth:`asr.decoding.beam_search.BeamSearchOptions.from_file`).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
import time
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from asr.data.manifest import read_manifest
from asr.data.tokenizer import normalize_text
from asr.decoding.beam_search import BeamSearchDecoder, BeamSearchOptions
from asr.errors import LMError
from asr.evaluation.metrics import ErrorRates
from asr.inference.transcribe import transcribe

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


class CapturingDecoder:
    """A decoder that keeps each utterance's log-probs and returns a key in place of its text.

    :func:`asr.inference.transcribe.transcribe` batches by length but returns results in input order, so the keys it
    hands back say which stored log-probs belong to which input; the model runs once for a whole search.
    """

    def __init__(self) -> None:
        self.log_probs: list[np.ndarray] = []

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        keys = []
        lp = log_probs.detach().float().cpu().numpy()
        for i, n in enumerate(lengths.cpu().tolist()):
            keys.append(str(len(self.log_probs)))
            self.log_probs.append(np.ascontiguousarray(lp[i, :n]))
        return keys


def dev_log_probs(
    loaded: Any, manifest: str | os.PathLike, max_batch_seconds: float = 300.0
) -> tuple[list[np.ndarray], list[str]]:
    """Each readable utterance's log-probs and normalised reference, from one pass of the model."""
    utts = read_manifest(manifest, strict=False)
    capture = CapturingDecoder()
    # vad="none": every utterance goes whole through the model and the decoder, silent or not, so each gets a key
    results = transcribe(
        loaded,
        [u.audio_filepath for u in utts],
        max_batch_seconds=max_batch_seconds,
        decoder=capture,
        vad="none",
        word_timestamps=False,
    )
    emissions, refs = [], []
    for u, t in zip(utts, results):
        if t.error is None:
            emissions.append(capture.log_probs[int(t.text)])
            refs.append(normalize_text(u.text))
    return emissions, refs


def corpus_wer(decoder: Any, emissions: Sequence[np.ndarray], refs: Sequence[str]) -> float:
    rates = ErrorRates()
    for e, ref in zip(emissions, refs):
        text = decoder.decode_one(e).text if hasattr(decoder, "decode_one") else decoder(e)
        rates.add(ref, text)
    return rates.wer


def tune(
    decoder: BeamSearchDecoder,
    emissions: Sequence[np.ndarray],
    refs: Sequence[str],
    lm_weights: Sequence[float],
    word_scores: Sequence[float],
    search: str = "grid",
    trials: int = 40,
    seed: int = 0,
) -> list[dict[str, float]]:
    """WER at each (lm_weight, word_score) point, best first; the grid, or ``trials`` random points of it."""
    points = list(itertools.product(lm_weights, word_scores))
    if search == "random" and trials < len(points):
        points = random.Random(seed).sample(points, trials)
    rows = []
    for i, (alpha, beta) in enumerate(points, 1):
        wer = corpus_wer(decoder.with_options(lm_weight=alpha, word_score=beta), emissions, refs)
        rows.append({"lm_weight": alpha, "word_score": beta, "wer": wer})
        log.info("%d/%d  lm_weight %.3g  word_score %.3g  WER %.2f %%", i, len(points), alpha, beta, 100 * wer)
    return sorted(rows, key=lambda r: (r["wer"], r["lm_weight"], abs(r["word_score"])))


def tune_lm(
    model: Any,
    manifest: str | os.PathLike,
    lm: str | os.PathLike,
    output: str | os.PathLike,
    *,
    lexicon: str | os.PathLike | None = None,
    lm_weights: Sequence[float] = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0),
    word_scores: Sequence[float] = (-1.0, 0.0, 1.0, 2.0, 3.0),
    search: str = "grid",
    trials: int = 40,
    beam_size: int = 32,
    beam_threshold: float = 25.0,
    max_batch_seconds: float = 300.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Search the LM weight and word score of ``model`` (a loaded model) on ``manifest``; write the best to ``output``.

    Returns what was written: the best weights, the dev WER with them and greedy, and how many points were tried.
    """
    import torch

    from asr.decoding.greedy import greedy_ids

    options = BeamSearchOptions(beam_size=beam_size, beam_threshold=beam_threshold)
    decoder = BeamSearchDecoder(model.tokenizer, lm, lexicon, options)
    start = time.perf_counter()
    emissions, refs = dev_log_probs(model, manifest, max_batch_seconds)
    if not emissions:
        raise LMError(f"{manifest}: no readable utterances to tune on")
    greedy = ErrorRates()
    for e, ref in zip(emissions, refs):
        ids = greedy_ids(torch.from_numpy(e)[None], torch.tensor([e.shape[0]]), model.tokenizer.blank_id)[0]
        greedy.add(ref, model.tokenizer.decode(ids))
    log.info(
        "model pass over %d utterances: %.1f s; greedy WER %.2f %%",
        len(refs),
        time.perf_counter() - start,
        100 * greedy.wer,
    )
    rows = tune(decoder, emissions, refs, lm_weights, word_scores, search, trials, seed)
    best = rows[0]
    out = {
        "lm_weight": best["lm_weight"],
        "word_score": best["word_score"],
        "beam_size": beam_size,
        "beam_threshold": beam_threshold,
        "lm": str(lm),
        "mode": decoder.mode,
        "dev_manifest": str(manifest),
        "dev_wer": best["wer"],
        "dev_greedy_wer": greedy.wer,
        "points": len(rows),
    }
    with open(output, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    return out
