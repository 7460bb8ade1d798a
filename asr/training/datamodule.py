"""LightningDataModule: manifests -> screened utterances -> duration-bucketed DataLoaders."""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any, Callable, Iterator, Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader

from asr.data.dataset import AudioDataset, Skipped, collate, screen_utterances
from asr.data.manifest import ManifestError, Utterance, read_manifest
from asr.data.sampler import DynamicBucketingSampler
from asr.data.shard_stream import ShardStream, shard_collate
from asr.data.shards import read_shard_manifest
from asr.data.tokenizer import Tokenizer
from asr.training.config import DataConfig

log = logging.getLogger("asr")


def load_split(
    path: str | os.PathLike,
    tokenizer: Tokenizer,
    output_frames: Callable[[Sequence[float]], Sequence[int]],
    max_duration: float | None,
    fastest_speed: float = 1.0,
    sharded: bool = False,
) -> tuple[list[Utterance], list[Skipped]]:
    """Read and screen one manifest; bad lines and unusable utterances are returned as :class:`Skipped`.

    ``fastest_speed`` is the largest speed-perturbation factor training may apply (1.0 without it): the audio is
    then that much shorter, and the screening must hold for the shortest version. ``sharded``: ``path`` is a tar
    shards' manifest (:mod:`asr.data.shards`), its audio_filepath member names.
    """
    errors: list[str] = []
    utts = (read_shard_manifest if sharded else read_manifest)(path, strict=False, errors=errors)
    skipped = [Skipped(e.split(": ", 1)[0], "", e.split(": ", 1)[-1]) for e in errors]
    kept, rejected = screen_utterances(utts, tokenizer, output_frames, max_duration, fastest_speed)
    skipped += rejected
    if not kept:
        raise ManifestError(
            f"{path}: no usable utterances ({len(skipped)} skipped; first: "
            f"{skipped[0] if skipped else 'manifest is empty'})"
        )
    return kept, skipped


class ResumableDataLoader(DataLoader):
    """A DataLoader Lightning checkpoints: its ``state_dict`` is the batch sampler's epoch and the number of batches
    *delivered to the training loop*, which Lightning stores in each checkpoint and hands back to
    ``load_state_dict`` on resume (``_Stateful`` loaders in ``CombinedLoader``).

    The count is taken here rather than in the sampler because worker processes draw indices from the sampler
    ahead of the loop (``prefetch_factor`` batches per worker); only what left the loader was trained on.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._delivered: tuple[int, int] | None = None  # (epoch, batches delivered) of the iteration under way

    @property
    def position_source(self) -> Any:
        """What knows the epoch and where it starts: the batch sampler, or a :class:`ShardStream` dataset."""
        return self.batch_sampler if hasattr(self.batch_sampler, "state_dict") else self.dataset

    def __iter__(self) -> Iterator[Any]:
        sampler = self.position_source
        epoch, delivered = sampler.epoch, sampler.start_position  # past what a resumed run already trained
        self._delivered = (epoch, delivered)
        for batch in super().__iter__():
            delivered += 1
            self._delivered = (epoch, delivered)
            yield batch

    def state_dict(self) -> dict[str, int]:
        state = self.position_source.state_dict()
        if self._delivered is not None and self._delivered[0] == state["epoch"]:
            state["position"] = self._delivered[1]
        return state

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.position_source.load_state_dict(state)
        self._delivered = None


class ASRDataModule(L.LightningDataModule):
    def __init__(
        self,
        train: list[Utterance],
        val: list[Utterance],
        tokenizer: Tokenizer,
        sample_rate: int,
        config: DataConfig,
        seed: int = 0,
        train_shards: str | Sequence[str] | None = None,
    ):
        """``train_shards``: tar shard URLs (``DIR/audio_{0..N}.tar``) holding ``train``, which then comes from
        their shard manifest (audio_filepath a member name, ``shard_id``); batches stream from the shards."""
        super().__init__()
        self.config = config
        self.seed = seed
        self.train_shards = train_shards
        self.tokenizer, self.sample_rate = tokenizer, sample_rate
        self.train_set = AudioDataset(train, tokenizer, sample_rate)
        self.val_set = AudioDataset(val, tokenizer, sample_rate)

    def _world(self) -> tuple[int, int]:
        if self.trainer is not None:
            return self.trainer.world_size, self.trainer.global_rank
        return 1, 0

    def _loader(self, dataset: AudioDataset, batch_sampler, resumable: bool = False) -> DataLoader:
        workers = self.config.num_workers
        loader = ResumableDataLoader if resumable else DataLoader
        return loader(
            dataset,
            batch_sampler=batch_sampler,
            collate_fn=collate,
            num_workers=workers,
            pin_memory=self.config.pin_memory and torch.cuda.is_available(),
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
        )

    def _shard_loader(self) -> DataLoader:
        world, rank = self._world()
        c = self.config
        stream = ShardStream(
            self.train_shards,
            self.train_set.utterances,
            self.tokenizer,
            self.sample_rate,
            max_batch_seconds=float(c.max_batch_seconds),
            num_workers=c.num_workers,
            world_size=world,
            rank=rank,
            max_batch_size=c.max_batch_size,
            buffer_size=c.shard_buffer,
            shuffle_window=c.shuffle_window,
            seed=self.seed,
            resample=c.shard_resample,
        )
        p = stream.planner
        log.info(
            "train from %d shards%s: %d readers (%d ranks x %d), %.0f-%.0f s of audio each; %d batches per rank, "
            "padding %.1f %% of frames",
            len(stream.urls),
            ", drawn anew each epoch" if c.shard_resample else "",
            world * stream.readers,
            world,
            stream.readers,
            min(p.reader_seconds),
            max(p.reader_seconds),
            len(stream),
            100 * p.padding_fraction(),
        )
        if c.sortagrad:
            log.info("data.sortagrad does not apply to shards: a stream of shards has no corpus-wide duration order")
        # Lightning warns that an IterableDataset's len() may be wrong with several workers: this one's is exact
        # (every reader plans exactly batches_per_reader batches).
        warnings.filterwarnings("ignore", message=".*IterableDataset.*has `__len__` defined", category=UserWarning)
        workers = c.num_workers
        # Not persistent: each epoch's workers are started with the epoch (and resume position) set beforehand.
        return ResumableDataLoader(
            stream,
            batch_size=None,
            collate_fn=shard_collate,
            num_workers=workers,
            pin_memory=c.pin_memory and torch.cuda.is_available(),
            prefetch_factor=4 if workers > 0 else None,
        )

    def train_dataloader(self) -> DataLoader:
        if self.train_shards:
            return self._shard_loader()
        world, rank = self._world()
        c = self.config
        sampler = DynamicBucketingSampler(
            self.train_set.durations,
            max_batch_seconds=c.max_batch_seconds,
            shuffle=True,
            seed=self.seed,
            num_replicas=world,
            rank=rank,
            sortagrad=c.sortagrad,
            max_batch_size=c.max_batch_size,
            shuffle_window=c.shuffle_window,
        )
        stats = sampler.stats()
        log.info("train batches per rank: %d, padding %.1f %% of frames", len(sampler), 100 * stats.padding_fraction)
        return self._loader(self.train_set, sampler, resumable=True)

    def val_dataloader(self) -> DataLoader:
        world, rank = self._world()
        # Sorted, tightly packed, every utterance once; ranks take every world-th batch (counts may differ by one,
        # which is fine because validation steps do no collective communication).
        batches = list(
            DynamicBucketingSampler(
                self.val_set.durations,
                self.config.max_batch_seconds,
                shuffle=False,
                num_replicas=1,
                rank=0,
                max_batch_size=self.config.max_batch_size,
            )
        )
        if len(batches) < world:  # a small dev set on many devices: every rank still needs a batch
            if len(self.val_set) < world:
                raise ManifestError(
                    f"the validation set has {len(self.val_set)} usable utterances, fewer than the "
                    f"{world} training processes; add utterances or use fewer devices"
                )
            order = sorted(range(len(self.val_set)), key=lambda i: self.val_set.durations[i])
            batches = [order[r::world] for r in range(world)]
        return self._loader(self.val_set, batches[rank::world])
