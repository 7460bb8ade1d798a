"""Transcribing audio files with a trained model: batched by length for speed, any rate or channel count."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from asr.audio import AudioError, audio_info, load_audio
from asr.decoding import Decoder, GreedyDecoder
from asr.model_file import LoadedModel
from asr.sampler import DynamicBucketingSampler


@dataclass
class Transcript:
    path: str
    text: str | None
    duration: float | None
    error: str | None = None


@torch.inference_mode()
def transcribe(loaded: LoadedModel, paths: Sequence[str | os.PathLike], max_batch_seconds: float = 300.0,
               num_threads: int = 2, bf16: bool = False, decoder: Decoder | None = None) -> list[Transcript]:
    """Transcribe ``paths``; results come back in input order, with ``error`` set for files that can't be read.

    Files are sorted by duration (from headers) and batched up to ``max_batch_seconds`` of padded audio, so a
    long list costs little more padding than one file at a time; decoding overlaps in a small thread pool.
    ``bf16`` runs the encoder under bfloat16 autocast (features stay float32): faster on GPUs and on CPUs with
    bf16 units, at a small cost in accuracy. ``decoder`` turns log-probs into text (default: greedy).
    """
    model, tokenizer = loaded.model, loaded.tokenizer
    decoder = decoder or GreedyDecoder(tokenizer)
    sr = model.sample_rate
    results: list[Transcript | None] = [None] * len(paths)
    durations: list[float] = [0.0] * len(paths)
    ok: list[int] = []
    for i, p in enumerate(paths):
        try:
            durations[i] = audio_info(p).duration
            ok.append(i)
        except AudioError as e:
            results[i] = Transcript(str(p), None, None, str(e))
    sampler = DynamicBucketingSampler([durations[i] for i in ok], max_batch_seconds, shuffle=False,
                                      num_replicas=1, rank=0)
    batches = [[ok[j] for j in batch] for batch in sampler]

    def read(i: int) -> tuple[int, np.ndarray | AudioError]:
        try:
            return i, load_audio(paths[i], sr)
        except AudioError as e:
            return i, e

    with ThreadPoolExecutor(max_workers=max(1, num_threads)) as pool:
        for batch in batches:
            audios = []
            for i, a in pool.map(read, batch):
                if isinstance(a, AudioError):
                    results[i] = Transcript(str(paths[i]), None, None, str(a))
                else:
                    audios.append((i, a))
            if not audios:
                continue
            lengths = torch.tensor([a.shape[0] for _, a in audios], dtype=torch.long)
            padded = torch.zeros(len(audios), int(lengths.max()))
            for row, (_, a) in enumerate(audios):
                padded[row, : a.shape[0]] = torch.from_numpy(a)
            with torch.autocast(device_type=model.device.type, dtype=torch.bfloat16, enabled=bf16):
                log_probs, out_lens = model(padded.to(model.device), lengths.to(model.device))
            for (i, a), text in zip(audios, decoder(log_probs.float(), out_lens)):
                results[i] = Transcript(str(paths[i]), text, a.shape[0] / sr)
    return [r for r in results if r is not None]
