"""Global log-mel statistics for ``features.normalize: global``, estimated once before training starts."""

from __future__ import annotations

import random
from typing import Iterable, Sequence

import numpy as np
import torch

from asr.data.audio import load_audio
from asr.data.manifest import Utterance
from asr.data.shard_stream import sample_shard_audio
from asr.errors import ConfigError
from asr.training.ctc_module import CTCModule


@torch.no_grad()
def estimate_global_stats(
    module: CTCModule,
    utterances: Sequence[Utterance],
    max_utterances: int = 500,
    seed: int = 0,
    shards: str | Sequence[str] | None = None,
) -> None:
    """Mean/std of log-mel per bin over a seeded random sample of the training set, for ``features.normalize:
    global``; a sample of the whole set, because the first lines of a sorted manifest are a handful of speakers.
    With ``shards`` (the utterances are their manifest's) the sample comes from a few shards drawn at random."""
    feats = module.model.features
    total, total_sq, count = torch.zeros(feats.n_mels), torch.zeros(feats.n_mels), 0
    if shards:
        audios: Iterable[np.ndarray] = sample_shard_audio(
            shards, utterances, module.model.sample_rate, max_utterances, seed=seed
        )
    else:
        chosen = sorted(random.Random(seed).sample(range(len(utterances)), min(max_utterances, len(utterances))))
        audios = (load_audio(utterances[i].audio_filepath, module.model.sample_rate) for i in chosen)
    for audio in audios:
        x = feats.log_mel(torch.from_numpy(audio)[None])[0]
        total += x.sum(0)
        total_sq += (x**2).sum(0)
        count += x.shape[0]
    if count == 0:
        raise ConfigError("features.normalize: global: none of the sampled training audio could be read")
    feats.set_global_stats(total, total_sq, count)
