"""Manifest utterances -> padded batches of audio and CTC targets.

Decoding happens here (in DataLoader workers); features are computed later, on the model's device. A file
that fails to decode does not crash a long job: it is left out of its batch and reported in ``batch["skipped"]``
so the training loop can count and log it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset

from asr.data.audio import AudioError, load_audio
from asr.data.manifest import Utterance
from asr.data.tokenizer import OutOfVocabularyError, Tokenizer


@dataclass
class Skipped:
    """An utterance left out of training or evaluation, and why."""

    source: str
    audio_filepath: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source or self.audio_filepath}: {self.reason}"


def ctc_min_frames(token_ids: Sequence[int]) -> int:
    """Frames CTC needs for a target: one per token plus a blank between each pair of repeated tokens."""
    repeats = sum(1 for a, b in zip(token_ids, token_ids[1:]) if a == b)
    return len(token_ids) + repeats


class AudioDataset(Dataset):
    """Returns dicts with the decoded audio, its target ids and the text; or a :class:`Skipped` on failure."""

    def __init__(self, utterances: Sequence[Utterance], tokenizer: Tokenizer, sample_rate: int):
        self.utterances = list(utterances)
        self.tokenizer = tokenizer
        self.sample_rate = sample_rate

    def __len__(self) -> int:
        return len(self.utterances)

    @property
    def durations(self) -> list[float]:
        return [u.duration for u in self.utterances]

    def __getitem__(self, index: int) -> dict[str, Any] | Skipped:
        u = self.utterances[index]
        try:
            audio = load_audio(u.audio_filepath, self.sample_rate)
            targets = self.tokenizer.encode(u.text)
        except (AudioError, OutOfVocabularyError) as e:
            return Skipped(u.source, u.audio_filepath, str(e))
        return {
            "audio": torch.from_numpy(audio),
            "targets": torch.tensor(targets, dtype=torch.long),
            "text": self.tokenizer.decode(targets),
            "index": index,
            "path": u.audio_filepath,
        }


def collate(items: Sequence[dict[str, Any] | Skipped]) -> dict[str, Any]:
    """Pad audio (B, S) and targets (B, L) with their lengths; carry skipped items along for counting."""
    good = [it for it in items if not isinstance(it, Skipped)]
    skipped = [it for it in items if isinstance(it, Skipped)]
    n = len(good)
    max_s = max((it["audio"].numel() for it in good), default=0)
    max_l = max((it["targets"].numel() for it in good), default=0)
    audio = torch.zeros(n, max_s)
    targets = torch.zeros(n, max_l, dtype=torch.long)
    for i, it in enumerate(good):
        audio[i, : it["audio"].numel()] = it["audio"]
        targets[i, : it["targets"].numel()] = it["targets"]
    return {
        "audio": audio,
        "audio_lengths": torch.tensor([it["audio"].numel() for it in good], dtype=torch.long),
        "targets": targets,
        "target_lengths": torch.tensor([it["targets"].numel() for it in good], dtype=torch.long),
        "texts": [it["text"] for it in good],
        "indices": [it["index"] for it in good],
        "paths": [it["path"] for it in good],
        "skipped": skipped,
    }


def screen_utterances(
    utterances: Sequence[Utterance],
    tokenizer: Tokenizer,
    output_frames: Callable[[Sequence[float]], Sequence[int]],
    max_duration: float | None = None,
    fastest_speed: float = 1.0,
) -> tuple[list[Utterance], list[Skipped]]:
    """Split utterances into usable ones and :class:`Skipped` ones, with a reason for each.

    ``output_frames(durations_in_seconds)`` gives the number of CTC frames the model emits for each duration,
    so a transcript too long for its audio after subsampling is caught here, before it can make the loss
    infinite. ``fastest_speed`` > 1 (speed perturbation) screens the audio as it is when played that much
    faster, since training may shorten it so.
    """
    kept, skipped = [], []
    frames = output_frames([u.duration / fastest_speed for u in utterances])
    at_speed = f" at speed {fastest_speed:g} (augment.speed_factors)" if fastest_speed != 1.0 else ""
    for u, have in zip(utterances, frames):
        if max_duration is not None and u.duration > max_duration:
            skipped.append(
                Skipped(
                    u.source,
                    u.audio_filepath,
                    f"{u.duration:.2f} s is longer than data.max_duration={max_duration:g} s",
                )
            )
            continue
        try:
            ids = tokenizer.encode(u.text)
        except OutOfVocabularyError as e:
            skipped.append(Skipped(u.source, u.audio_filepath, str(e)))
            continue
        need = ctc_min_frames(ids)
        if need > have:
            skipped.append(
                Skipped(
                    u.source,
                    u.audio_filepath,
                    f"transcript needs {need} CTC frames but {u.duration:.2f} s of audio gives only "
                    f"{have}{at_speed} after subsampling",
                )
            )
            continue
        kept.append(u)
    return kept, skipped
