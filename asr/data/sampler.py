"""Duration-aware batching: batches capped by *padded* seconds of audio, with little padding.

An RNN pays for every padded frame, and a fixed batch size either wastes memory on short utterances or runs out
of it on long ones. So utterances are sorted by duration and cut into runs of neighbours, each run about as large
as ``max_batch_seconds`` allows (batch size x longest duration in the batch). Neighbours in sorted order have
almost the same duration, so padding stays near the shuffle window (about 2 % with the default); quantile buckets
with random batches inside each bucket pay half the width of a bucket instead (5-10 % in the long tail).

Epochs differ in three ways: each duration is jittered by up to ``shuffle_window`` (relative) before sorting, so
utterances of nearly equal length are mixed into different batches; the cut points move randomly; the batch order
is shuffled. The number of batches is nevertheless the same in every epoch, because Lightning and learning-rate
schedules read ``len()`` once, before the first epoch: it is fixed from the sorted order plus a margin for the
jitter, and spare batches are spread over the epoch by filling every batch slightly less than the limit allows.

Resuming: :meth:`state_dict` is the epoch and how many of this rank's batches were consumed; after
:meth:`load_state_dict` the next iteration continues with the batch after those, so a run interrupted mid-epoch
and resumed sees exactly the batches an uninterrupted run would have (the order is a pure function of
(seed, epoch)). ``asr.training.datamodule.ResumableDataLoader`` hands this state to Lightning's checkpoints.

Distributed training: every rank builds the same global list of batches from (seed, epoch) and takes its share.
The batch count is rounded up to a multiple of the number of replicas (a few batches filled slightly less), so no
utterance is dropped or repeated. Only where that is impossible (fewer utterances than batches) or when
``drop_last`` asks for it are the surplus batches dropped instead; :attr:`DynamicBucketingSampler.num_dropped`
counts the utterances left out of the current epoch. Groups of batches of similar duration are dealt to the
ranks at the same step, so no rank waits long for another.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler


def padding_fraction(durations: Sequence[float], batches: Sequence[Sequence[int]]) -> float:
    """Share of padded frames: ``1 - sum(durations) / sum(len(batch) * max duration in batch)``."""
    d = np.asarray(durations, dtype=np.float64)
    used = padded = 0.0
    for b in batches:
        if len(b):
            db = d[np.asarray(b, dtype=np.int64)]
            used += float(db.sum())
            padded += len(db) * float(db.max())
    return 1.0 - used / padded if padded > 0 else 0.0


@dataclass
class BatchStats:
    """What one epoch of the sampler looks like, over all ranks; for logging and for tuning the limit."""

    num_batches: int
    mean_batch_size: float
    padding_fraction: float
    mean_padded_seconds: float
    num_dropped: int


class DynamicBucketingSampler(Sampler[list[int]]):
    """Batch sampler (pass it as ``DataLoader(batch_sampler=...)``) yielding lists of dataset indices.

    Each batch satisfies ``len(batch) * max(durations[batch]) <= max_batch_seconds`` (and ``len(batch) <=
    max_batch_size`` if given); an utterance longer than the limit forms a batch of its own, so filter those
    out upstream. The output depends only on (durations, arguments, epoch): call :meth:`set_epoch` before each
    epoch (Lightning does) to get a new order. ``num_replicas``/``rank`` default to torch.distributed's when it is
    initialised; with Lightning set ``use_distributed_sampler=False`` so the sampler is not replaced.

    ``shuffle_window`` is how far, relative to its duration, an utterance may move in the sorted order each
    epoch: utterances within about +-2 % of each other's duration are shuffled together. Padding is about the
    window plus what the sorted order needs (under 1 % for LibriSpeech-sized sets, more when a few thousand
    utterances fill only a few dozen batches); the batch count grows by about the window too.

    ``shuffle=False`` gives the tightest packing, in ascending duration order, the same every epoch (for
    validation). ``sortagrad=True`` makes epoch 0 ascending in duration (SortaGrad, DeepSpeech 2): short
    utterances first while the model is fragile. ``drop_last=True`` drops the surplus batches (at random)
    instead of cutting a few extra ones when the batch count does not divide by ``num_replicas``; it changes
    nothing on one replica.
    """

    def __init__(
        self,
        durations: Sequence[float],
        max_batch_seconds: float,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int | None = None,
        rank: int | None = None,
        sortagrad: bool = False,
        max_batch_size: int | None = None,
        shuffle_window: float = 0.02,
    ) -> None:
        d = np.asarray(durations, dtype=np.float64)
        if d.ndim != 1:
            raise ValueError("durations must be a flat sequence of seconds")
        if not np.isfinite(d).all() or (d < 0).any():
            raise ValueError("durations must be finite and non-negative")
        if not max_batch_seconds > 0:
            raise ValueError(f"max_batch_seconds must be positive, got {max_batch_seconds}")
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if not 0 <= shuffle_window < 1:
            raise ValueError(f"shuffle_window must be in [0, 1), got {shuffle_window}")
        if num_replicas is None:
            num_replicas = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if rank is None:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"invalid rank {rank} for num_replicas {num_replicas}")

        self.durations = d
        self.max_batch_seconds = float(max_batch_seconds)
        self.max_batch_size = max_batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.num_replicas = num_replicas
        self.rank = rank
        self.sortagrad = sortagrad
        self.shuffle_window = shuffle_window if shuffle else 0.0
        self.epoch = 0
        self._start = 0  # batches of the current epoch to pass over on the next iteration (after a resume)
        self._position = 0  # batches of the current epoch yielded so far

        # The sorted order needs the fewest batches; it is the fallback whenever a shuffled order would need
        # more than the fixed count.
        self._sorted_order = np.argsort(d, kind="stable")
        self._sorted_plan = self._plan(d[self._sorted_order])
        n, fewest, r = len(d), int(self._sorted_plan[1][0]), num_replicas
        # A shuffled order needs about `shuffle_window` more batches than the sorted one; the margin above that
        # keeps the fallback rare.
        wanted = min(n, math.ceil(fewest * (1 + 1.25 * self.shuffle_window)) + (self.shuffle_window > 0))
        rounded_up = math.ceil(wanted / r) * r
        if not drop_last and rounded_up <= n:
            self._num_cut = self._num_kept = rounded_up
        else:
            self._num_cut, self._num_kept = wanted, wanted // r * r
        self._cache: tuple[int, list[list[int]], int] | None = None

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:  # a new epoch starts from its first batch, whatever a resume said
            self._start = self._position = 0
        self.epoch = epoch

    @property
    def start_position(self) -> int:
        """The batch of the current epoch the next iteration starts with (0 unless resuming mid-epoch)."""
        return self._start

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "position"}``: the current epoch and how many of this rank's batches were yielded."""
        return {"epoch": self.epoch, "position": self._position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue where :meth:`state_dict` was taken: the next iteration starts at batch ``position`` of
        ``epoch``; a finished epoch (``position == len(self)``) continues with the first batch of the next one."""
        epoch, position = int(state["epoch"]), int(state["position"])
        if not 0 <= position <= len(self):
            raise ValueError(
                f"sampler position {position} is outside this epoch's {len(self)} batches; was the "
                "checkpoint written with other data or batch settings?"
            )
        if position == len(self):
            epoch, position = epoch + 1, 0
        self.epoch, self._start, self._position = epoch, position, position

    def __len__(self) -> int:
        return self._num_kept // self.num_replicas

    def __iter__(self) -> Iterator[list[int]]:
        start, self._start = self._start, 0
        self._position = start
        for batch in self.global_batches()[self.rank :: self.num_replicas][start:]:
            self._position += 1
            yield batch

    @property
    def num_dropped(self) -> int:
        """Utterances no rank sees in the current epoch (0 unless ``drop_last`` or too few utterances)."""
        self.global_batches()
        assert self._cache is not None
        return self._cache[2]

    def global_batches(self) -> list[list[int]]:
        """All ranks' batches of the current epoch, in step order: rank ``k`` takes ``[k::num_replicas]``."""
        if self._cache is None or self._cache[0] != self.epoch:
            batches, dropped = self._build(self.epoch)
            self._cache = (self.epoch, batches, dropped)
        return self._cache[1]

    def stats(self) -> BatchStats:
        """Batches, mean batch size, padding and drops of the current epoch, over all ranks."""
        batches = self.global_batches()
        sizes = [len(b) for b in batches]
        padded = [len(b) * float(self.durations[b].max()) for b in batches]
        return BatchStats(
            num_batches=len(batches),
            mean_batch_size=float(np.mean(sizes)) if sizes else 0.0,
            padding_fraction=padding_fraction(self.durations, batches),
            mean_padded_seconds=float(np.mean(padded)) if padded else 0.0,
            num_dropped=self.num_dropped,
        )

    def _plan(self, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For utterances taken in the order ``d``, ``(ends, fewest)``.

        ``ends[p]`` is the largest ``q`` such that ``p..q-1`` fit in one batch; a sub-run of a fitting run fits
        too, so ``ends`` never decreases and one two-pointer pass (with a running maximum) finds it.
        ``fewest[p]`` is the fewest batches covering ``p..n-1``, which the greedy furthest cut achieves.
        """
        n, limit, cap = len(d), self.max_batch_seconds, self.max_batch_size or len(d)
        ends = np.empty(n + 1, dtype=np.int64)
        ends[n] = n
        window: deque[int] = deque()  # indices of p..q-1, durations decreasing: window[0] is the longest
        q = 0
        for p in range(n):
            if window and window[0] < p:
                window.popleft()
            if q <= p:  # a single utterance is always a batch, even when over the limit
                q = p + 1
                window.clear()
                window.append(p)
            while q < n and q + 1 - p <= cap and (q + 1 - p) * max(d[window[0]], d[q]) <= limit:
                while window and d[window[-1]] <= d[q]:
                    window.pop()
                window.append(q)
                q += 1
            ends[p] = q
        fewest = np.zeros(n + 1, dtype=np.int64)
        for p in range(n - 1, -1, -1):
            fewest[p] = 1 + fewest[ends[p]]
        return ends, fewest

    def _cuts(self, ends: np.ndarray, fewest: np.ndarray, rng: np.random.Generator | None) -> list[int]:
        """End positions of exactly ``self._num_cut`` fitting runs covering the order planned by :meth:`_plan`.

        Spare batches (more batches than the fewest needed) are spread evenly: each batch is filled to about
        ``1 - spare share`` of what would fit, at a random point around that with ``rng``. A cut is never so
        early that the rest could not be covered by the batches left.
        """
        n = len(ends) - 1
        neg_fewest = -fewest  # non-decreasing, for searchsorted
        cuts, p = [], 0
        for left in range(self._num_cut, 0, -1):
            if left == 1:
                q = n
            else:
                hi = int(min(ends[p], n - (left - 1)))  # keep one utterance for each batch left
                lo = max(p + 1, int(np.searchsorted(neg_fewest, -(left - 1), side="left")))
                spare = 1.0 - fewest[p] / left
                if left == 2:  # split the rest evenly rather than leave a runt batch of the longest utterances
                    q = min(hi, max(lo, p + (n - p + 1) // 2))
                elif rng is None:
                    q = max(lo, p + math.ceil((hi - p) * (1.0 - spare)))
                else:
                    q = int(rng.integers(min(hi, max(lo, p + math.ceil((hi - p) * (1.0 - 2.0 * spare)))), hi + 1))
            cuts.append(q)
            p = q
        return cuts

    def _build(self, epoch: int) -> tuple[list[list[int]], int]:
        n, r = len(self.durations), self.num_replicas
        if n == 0:
            return [], 0
        ordered = not self.shuffle or (self.sortagrad and epoch == 0)
        rng = np.random.default_rng([self.seed, epoch])
        order, (ends, fewest) = self._sorted_order, self._sorted_plan
        if not ordered and self.shuffle_window > 0:
            keys = self.durations * np.exp(rng.uniform(-self.shuffle_window, self.shuffle_window, n))
            jittered = np.lexsort((rng.random(n), keys))
            plan = self._plan(self.durations[jittered])
            if plan[1][0] <= self._num_cut:
                order, (ends, fewest) = jittered, plan
        cuts = self._cuts(ends, fewest, None if ordered else rng)
        batches = [order[a:b].tolist() for a, b in zip([0] + cuts[:-1], cuts)]

        dropped = 0
        surplus = len(batches) - self._num_kept
        if surplus:
            # In ascending order the longest batches go, so the order stays ascending.
            gone = (
                set(range(len(batches) - surplus, len(batches)))
                if ordered
                else set(rng.choice(len(batches), surplus, replace=False).tolist())
            )
            dropped = sum(len(batches[i]) for i in gone)
            batches = [b for i, b in enumerate(batches) if i not in gone]
        if ordered:
            return batches, dropped
        # Deal groups of r neighbouring batches (similar durations) to the r ranks at the same step.
        groups = [batches[i : i + r] for i in range(0, len(batches), r)]
        return [groups[g][k] for g in rng.permutation(len(groups)) for k in rng.permutation(r)], dropped
