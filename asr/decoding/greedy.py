"""From CTC log-probabilities to text: the decoder interface, and greedy (best path) decoding.

A decoder is any callable ``decoder(log_probs, lengths) -> list[str]`` taking the model's (B, T, V) log-probs and
(B,) frame counts; :class:`GreedyDecoder` is the default, and language-model beam search
(:mod:`asr.decoding.beam_search`) plugs into the same place in :func:`asr.inference.transcribe.transcribe` and
:func:`asr.evaluation.evaluate.evaluate`.
"""

from __future__ import annotations

from typing import Protocol

import torch

from asr.data.tokenizer import Tokenizer


class Decoder(Protocol):
    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]: ...


def greedy_ids(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """Best path: arg-max per frame, merge repeats, drop blanks. ``log_probs`` is (B, T, V)."""
    best = log_probs.argmax(dim=-1).cpu()
    lengths = lengths.cpu().tolist()
    out = []
    for row, n in zip(best, lengths):
        row = row[:n]
        if n == 0:
            out.append([])
            continue
        keep = torch.ones_like(row, dtype=torch.bool)
        keep[1:] = row[1:] != row[:-1]
        keep &= row != blank
        out.append(row[keep].tolist())
    return out


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, tokenizer: Tokenizer) -> list[str]:
    return [tokenizer.decode(ids) for ids in greedy_ids(log_probs, lengths, tokenizer.blank_id)]


class GreedyDecoder:
    """Best-path decoding as a :class:`Decoder`."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        return greedy_decode(log_probs, lengths, self.tokenizer)

    def info(self) -> dict[str, str]:
        """What ``asr serve``'s ``/healthz`` says about the decoder."""
        return {"name": "greedy"}
