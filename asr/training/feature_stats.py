"""Global log-mel statistics for ``features.normalize: global``, estimated once before training starts."""

from __future__ import annotations

import random
from typing import Sequence

import torch

from asr.data.audio import load_audio
from asr.data.manifest import Utterance
from asr.training.ctc_module import CTCModule


@torch.no_grad()
def estimate_global_stats(
    module: CTCModule, utterances: Sequence[Utterance], max_utterances: int = 500, seed: int = 0
) -> None:
    """Mean/std of log-mel per bin over a seeded random sample of the training set, for ``features.normalize:
    global``; a sample of the whole set, because the first lines of a sorted manifest are a handful of speakers."""
    feats = module.model.features
    total, total_sq, count = torch.zeros(feats.n_mels), torch.zeros(feats.n_mels), 0
    chosen = sorted(random.Random(seed).sample(range(len(utterances)), min(max_utterances, len(utterances))))
    for u in (utterances[i] for i in chosen):
        x = feats.log_mel(torch.from_numpy(load_audio(u.audio_filepath, module.model.sample_rate))[None])[0]
        total += x.sum(0)
        total_sq += (x**2).sum(0)
        count += x.shape[0]
    feats.set_global_stats(total, total_sq, count)
