"""From CTC log-probabilities to token ids: greedy (best path) decoding."""

from __future__ import annotations

import torch

from asr.tokenizer import CharTokenizer


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


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, tokenizer: CharTokenizer) -> list[str]:
    return [tokenizer.decode(ids) for ids in greedy_ids(log_probs, lengths, tokenizer.blank_id)]
