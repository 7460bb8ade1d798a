"""Training batches streamed from tar shards: shards dealt to ranks and workers, a shuffle buffer with duration
bucketing inside it, and the same number of batches on every rank.

Every DataLoader worker of every rank (a *reader*; ``world_size x max(1, num_workers)`` of them) reads its own
shards front to back, never a loose file. Readers are given whole shards, balanced by seconds of audio (the
largest shard to the emptiest reader), once for the run; each epoch every reader reads its shards in a new order.

Batches: a reader keeps up to ``buffer_size`` utterances in a buffer; when it is full, it sorts them by duration
(jittered by ``shuffle_window``, as the manifest sampler does), cuts the sorted run into batches that fit
``max_batch_seconds`` of padded audio, and hands out a random half of them; at the end of its shards it hands out
the rest. Neighbours in duration order pad little, however the shards were cut, and a batch holds utterances from
several shards.

The same number of batches on every rank: DDP pairs the ranks' collectives step by step, so a rank with one batch
more than another waits for ever (speechbrain #1426, Lightning #9851). Shards differ in size and a buffer's
cuts depend on what it held, so the batches of each reader are *planned* before any audio is read, from the
manifest's durations alone: the plan is the buffer algorithm run on the durations, in the order the reader will
read them, a pure function of (seed, epoch, reader) that every rank computes alike. Every rank then gets exactly
``batches_per_rank`` batches over its readers (the most any rank needed in the first epoch, plus a margin): a rank
that needs fewer splits its fullest batches in two; an epoch whose plans would need more than that tries other
draws and, failing them, repeats the first epoch's plans. ``len()`` is thus the same on every rank and in every
epoch, and Lightning's schedule reads it.

While reading, a reader emits its planned batches in order, each once its members have arrived; a member that
never arrives (a shard cut short, a corrupt tar, a key the manifest names but the tar lacks) becomes a
:class:`~asr.data.dataset.Skipped` naming the shard URL and member, and undecodable audio is skipped the same
way, so the batch is still emitted (possibly empty: every rank then skips that step together) and the counts stay
equal. Memory holds at most a buffer of compressed audio when the tar's member order is the manifest's.

Resuming mid-epoch: the DataLoader takes batches from its workers in turn, passing over those that have run out,
so which reader delivers the ``i``-th batch of a rank follows from the readers' batch counts
(:func:`delivery_order`). After ``load_state_dict({"epoch", "position"})`` the next iteration starts with batch
``position``: each reader passes over (reading, not decoding) its batches delivered before it, skipping whole
shards that hold nothing later, and worker ``k`` plays the reader ``k`` places after the one due next, so the
turns continue exactly as in an uninterrupted epoch.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from asr.data.audio import AudioError, decode_audio
from asr.data.dataset import Skipped, collate
from asr.data.manifest import Utterance
from asr.data.shards import expand_urls, iter_shard, member_key
from asr.data.tokenizer import OutOfVocabularyError, Tokenizer
from asr.errors import ShardError

log = logging.getLogger("asr")

# The planned batch count per rank is the first epoch's largest times this, plus one: other epochs' buffers cut
# a little differently, and a count too small for an epoch falls back to a repeat of the first epoch's plans.
COUNT_MARGIN = 1.03
FULL = 0.9  # a batch this full (padded seconds / max_batch_seconds) may leave a buffer that is still refilling
DRAWS = 4  # other draws an epoch tries before repeating the first epoch's plan


@dataclass
class ShardPlan:
    """The shards of one reader, in reading order, and its batches (lists of manifest indices) in emitting order."""

    shards: list[int]
    batches: list[list[int]]
    repeated_first_epoch: bool = False


class ShardPlanner:
    """Pure planning from the manifest: which reader reads which shards, and the batches each emits per epoch."""

    def __init__(
        self,
        durations: Sequence[float],
        shard_ids: Sequence[int],
        num_shards: int,
        num_readers_per_rank: int,
        world_size: int,
        max_batch_seconds: float,
        max_batch_size: int | None = None,
        buffer_size: int = 1000,
        shuffle_window: float = 0.02,
        seed: int = 0,
        resample: bool = False,
    ) -> None:
        """``resample``: each epoch every reader draws its shards anew from all of them, at random and
        independently of the other readers (webdataset's ``resampled=True``, NeMo's ``shard_strategy:
        replicate``), until it holds its share of the epoch's audio; a shard may then be read by several readers
        of an epoch and by none, so an utterance is seen about once per epoch rather than exactly once. It needs
        no more shards than readers. Without it, every reader has shards of its own for the whole run."""
        if not max_batch_seconds > 0:
            raise ShardError(f"max_batch_seconds must be positive, got {max_batch_seconds}")
        if buffer_size < 1:
            raise ShardError(f"data.shard_buffer must be at least 1, got {buffer_size}")
        self.durations = np.asarray(durations, dtype=np.float64)
        self.max_batch_seconds, self.max_batch_size = float(max_batch_seconds), max_batch_size
        self.buffer_size, self.shuffle_window, self.seed = buffer_size, shuffle_window, seed
        self.readers_per_rank, self.world_size = num_readers_per_rank, world_size
        members: list[list[int]] = [[] for _ in range(num_shards)]
        for i, s in enumerate(shard_ids):
            members[s].append(i)
        self.members = members  # manifest order within each shard: the order the tar is written in
        readers = num_readers_per_rank * world_size
        nonempty = [s for s in range(num_shards) if members[s]]
        self.resample, self._nonempty = resample, nonempty
        self._shard_seconds = np.array([float(self.durations[members[s]].sum()) for s in nonempty])
        if not nonempty:
            raise ShardError("no shard holds a training utterance")
        if len(nonempty) < readers and not resample:
            raise ShardError(
                f"{len(nonempty)} shards with training utterances for {world_size} ranks x "
                f"{num_readers_per_rank} readers = {readers} readers: each reader needs a shard of its own; "
                "write more, smaller shards (asr shard --shard-seconds), lower data.num_workers, or draw shards "
                "at random each epoch (data.shard_resample=true)"
            )
        seconds = [float(self.durations[members[s]].sum()) for s in nonempty]
        # The largest shard to the reader with the fewest seconds so far (longest-processing-time first).
        heap = [(0.0, r) for r in range(readers)]  # (seconds so far, reader): the emptiest on top
        self.assignment: list[list[int]] = [[] for _ in range(readers)]
        for s, sec in sorted(zip(nonempty, seconds), key=lambda t: (-t[1], t[0])):
            load, r = heapq.heappop(heap)
            self.assignment[r].append(s)
            heapq.heappush(heap, (load + sec, r))
        self.reader_seconds = [load for load, _ in sorted(heap, key=lambda t: t[1])]
        if resample:  # each reader's share, drawn anew every epoch
            self.reader_seconds = [float(self._shard_seconds.sum()) / readers] * readers
        self._first = [self._natural(0, r, 0) for r in range(readers)]
        w = num_readers_per_rank
        most = max(sum(len(p.batches) for p in self._first[k * w : (k + 1) * w]) for k in range(world_size))
        self.batches_per_rank = math.ceil(most * COUNT_MARGIN) + 1

    def __len__(self) -> int:
        """Batches per rank and epoch: the same on every rank and in every epoch."""
        return self.batches_per_rank

    def rank_plan(self, epoch: int, rank: int) -> list[ShardPlan]:
        """The plans of rank ``rank``'s readers (worker ``k`` is reader ``rank * readers_per_rank + k``) for
        ``epoch``, with exactly :attr:`batches_per_rank` batches among them."""
        w = self.readers_per_rank
        readers = range(rank * w, (rank + 1) * w)
        for draw in range(DRAWS + 1):
            plans = [self._first[r] if epoch == 0 and draw == 0 else self._natural(epoch, r, draw) for r in readers]
            if sum(len(p.batches) for p in plans) <= self.batches_per_rank:
                break
        else:  # every draw needed more batches than the first epoch's count: repeat the first epoch's plans
            log.info(
                "epoch %d, rank %d: the first epoch's shard order and batches again (other draws needed more "
                "than %d batches)",
                epoch,
                rank,
                self.batches_per_rank,
            )
            plans = [
                ShardPlan(self._first[r].shards, self._first[r].batches, repeated_first_epoch=True) for r in readers
            ]
        out = [ShardPlan(list(p.shards), [list(b) for b in p.batches], p.repeated_first_epoch) for p in plans]
        missing = self.batches_per_rank - sum(len(p.batches) for p in out)
        for _ in range(missing):  # split the fullest batch of the rank in two
            k, i = max(
                ((k, i) for k, p in enumerate(out) for i in range(len(p.batches))),
                key=lambda t: len(out[t[0]].batches[t[1]]),
                default=(-1, -1),
            )
            if k < 0 or len(out[k].batches[i]) < 2:  # fewer utterances than batches: an empty one, skipped on
                min(out, key=lambda p: len(p.batches)).batches.append([])  # every rank together
                continue
            b = out[k].batches[i]
            out[k].batches[i : i + 1] = [b[: len(b) // 2], b[len(b) // 2 :]]
        return out

    def plan(self, epoch: int, reader: int) -> ShardPlan:
        """Reader ``reader``'s plan for ``epoch`` (global number: ``rank * readers_per_rank + worker``)."""
        return self.rank_plan(epoch, reader // self.readers_per_rank)[reader % self.readers_per_rank]

    def _natural(self, epoch: int, reader: int, draw: int) -> ShardPlan:
        """The buffer algorithm on the durations, in reading order; as many batches as it makes."""
        rng = np.random.default_rng([self.seed, epoch, reader, draw])
        if self.resample:  # shards drawn without replacement for this reader, until it holds its share
            share = float(self._shard_seconds.sum()) / len(self.assignment)
            order = rng.permutation(len(self._nonempty))
            held = np.cumsum(self._shard_seconds[order])
            shards = [self._nonempty[k] for k in order[: int(np.searchsorted(held, share * 0.999)) + 1]]
        else:
            shards = [self.assignment[reader][i] for i in rng.permutation(len(self.assignment[reader]))]
        batches: list[list[int]] = []
        buffer: list[int] = []
        for s in shards:
            for i in self.members[s]:
                buffer.append(i)
                if len(buffer) >= self.buffer_size:
                    buffer = self._hand_out(buffer, batches, rng, half=True)
        while buffer:
            buffer = self._hand_out(buffer, batches, rng, half=False)
        return ShardPlan(shards, batches)

    def _hand_out(self, buffer: list[int], out: list[list[int]], rng: np.random.Generator, half: bool) -> list[int]:
        idx = np.asarray(buffer, dtype=np.int64)
        d = self.durations[idx]
        keys = d * np.exp(rng.uniform(-self.shuffle_window, self.shuffle_window, len(d))) if self.shuffle_window else d
        order = idx[np.lexsort((rng.random(len(d)), keys))]
        cuts = self._cut(order)
        # While the buffer refills, only batches filled to FULL of the limit go; a runt waits for neighbours.
        limit, cap = self.max_batch_seconds, self.max_batch_size or len(order)
        full = [k for k, c in enumerate(cuts) if len(c) >= cap or len(c) * self.durations[c].max() >= FULL * limit]
        candidates = rng.permutation(full) if half and full else rng.permutation(len(cuts))
        chosen, taken = [], 0
        for k in candidates:
            if half and taken >= len(buffer) / 2:
                break
            chosen.append(int(k))
            taken += len(cuts[k])
        out.extend(cuts[k] for k in chosen)
        gone = set(chosen)
        return [i for k, c in enumerate(cuts) if k not in gone for i in c]

    def _cut(self, order: np.ndarray) -> list[list[int]]:
        """Greedy runs of the duration-sorted ``order`` fitting ``len x longest <= max_batch_seconds``."""
        limit, cap = self.max_batch_seconds, self.max_batch_size or len(order)
        cuts: list[list[int]] = []
        run: list[int] = []
        longest = 0.0
        for i in order.tolist():
            d = float(self.durations[i])
            if run and ((len(run) + 1) * max(longest, d) > limit or len(run) >= cap):
                cuts.append(run)
                run, longest = [], 0.0
            run.append(i)
            longest = max(longest, d)
        if run:
            cuts.append(run)
        return cuts

    def padding_fraction(self, epoch: int = 0) -> float:
        """Padded share of the frames of this epoch's batches, over all ranks (for the training log)."""
        used = padded = 0.0
        for rank in range(self.world_size):
            for p in self.rank_plan(epoch, rank):
                for b in p.batches:
                    if b:
                        d = self.durations[b]
                        used, padded = used + float(d.sum()), padded + len(b) * float(d.max())
        return 1.0 - used / padded if padded else 0.0


def delivery_order(counts: Sequence[int]) -> list[int]:
    """Which worker each batch of a rank comes from: the DataLoader asks its workers in turn and passes over
    one that has run out, so with ``counts[k]`` batches in worker ``k`` the order is round robin over those left."""
    left, order = list(counts), []
    while any(left):
        for k in range(len(left)):
            if left[k]:
                order.append(k)
                left[k] -= 1
    return order


def check_shards(urls: str | Sequence[str], utterances: Sequence[Utterance]) -> list[str]:
    """The expanded URLs, once every utterance's ``shard_id`` has a URL and every local shard exists.

    Run before training starts, so that a wrong brace range or a missing file is one line at start-up rather
    than a run whose every batch is skipped; a remote or ``pipe:`` shard that fails later is skipped and counted.
    """
    expanded = expand_urls(urls)
    beyond = [u for u in utterances if int(u.extra["shard_id"]) >= len(expanded)]
    if beyond:
        u, top = beyond[0], max(int(v.extra["shard_id"]) for v in utterances)
        raise ShardError(
            f"{u.source}: shard_id {u.extra['shard_id']} but the shard URLs expand to {len(expanded)} "
            f"(shard 0 is {expanded[0]}); give all the shards, e.g. audio_{{0..{top}}}.tar"
        )
    used = {int(u.extra["shard_id"]) for u in utterances}
    for k in sorted(used):
        url = expanded[k]
        local = "://" not in url and not url.startswith("pipe:")
        if local and not os.path.isfile(url.removeprefix("file:")):
            raise ShardError(f"{url}: shard {k} not found (the shard manifest names {len(used)} shards)")
    return expanded


def sample_shard_audio(
    urls: str | Sequence[str],
    utterances: Sequence[Utterance],
    sample_rate: int,
    max_utterances: int = 500,
    per_shard: int = 50,
    seed: int = 0,
) -> Iterator[np.ndarray]:
    """Decoded audio of up to ``max_utterances`` training utterances, for statistics (``features.normalize:
    global``): up to ``per_shard`` from each of shards drawn at random (seeded), so that a few shards are read
    rather than one member from each of hundreds. Members that do not decode are passed over."""
    expanded = check_shards(urls, utterances)
    by_shard: dict[int, set[str]] = {}
    for u in utterances:
        by_shard.setdefault(int(u.extra["shard_id"]), set()).add(str(member_key(u.audio_filepath)))
    order = sorted(by_shard)
    np.random.default_rng(seed).shuffle(order)
    taken = 0
    for shard in order:
        got = 0
        for sample in iter_shard(expanded[shard], lambda line: log.warning("shard %s", line)):
            if sample.key not in by_shard[shard]:
                continue
            try:
                audio = decode_audio(sample.audio, f"{expanded[shard]}:{sample.member}", sample_rate)
            except AudioError:
                continue
            yield audio
            got, taken = got + 1, taken + 1
            if taken >= max_utterances:
                return
            if got >= per_shard:
                break


def _identity(batch: Any) -> Any:
    return batch  # batches are collated in the workers; a module-level function pickles


class ShardStream(IterableDataset):
    """Collated training batches (:func:`asr.data.dataset.collate`'s dicts) read from tar shards.

    Use with ``DataLoader(ds, batch_size=None, num_workers=W, collate_fn=shard_collate)`` and the same ``W`` as
    ``num_readers_per_rank`` (``max(1, W)``); :meth:`set_epoch` before each epoch and :meth:`load_state_dict` to
    resume, as with :class:`~asr.data.sampler.DynamicBucketingSampler`. ``batch["indices"]`` are indices into
    ``utterances``.
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        utterances: Sequence[Utterance],
        tokenizer: Tokenizer,
        sample_rate: int,
        max_batch_seconds: float,
        num_workers: int = 0,
        world_size: int = 1,
        rank: int = 0,
        max_batch_size: int | None = None,
        buffer_size: int = 1000,
        shuffle_window: float = 0.02,
        seed: int = 0,
        resample: bool = False,
    ) -> None:
        self.urls = check_shards(urls, utterances)
        self.utterances = list(utterances)
        shard_ids = [int(u.extra["shard_id"]) for u in self.utterances]
        self.keys = [member_key(u.audio_filepath) for u in self.utterances]
        self.tokenizer, self.sample_rate = tokenizer, sample_rate
        self.rank, self.world_size = rank, world_size
        self.readers = max(1, num_workers)
        self.planner = ShardPlanner(
            [u.duration for u in self.utterances],
            shard_ids,
            len(self.urls),
            self.readers,
            world_size,
            max_batch_seconds,
            max_batch_size=max_batch_size,
            buffer_size=buffer_size,
            shuffle_window=shuffle_window,
            seed=seed,
            resample=resample,
        )
        self.epoch = 0
        self._start = 0

    def __len__(self) -> int:
        return len(self.planner)

    @property
    def durations(self) -> list[float]:
        return [u.duration for u in self.utterances]

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self._start = 0
        self.epoch = epoch

    @property
    def start_position(self) -> int:
        return self._start

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self._start, "readers": self.readers}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, position = int(state["epoch"]), int(state["position"])
        readers = int(state.get("readers", self.readers))
        if readers != self.readers:
            raise ShardError(
                f"the checkpoint was written with {readers} shard readers per rank (data.num_workers), this run "
                f"has {self.readers}: the batches differ; resume with data.num_workers={readers}"
            )
        if not 0 <= position <= len(self):
            raise ShardError(
                f"shard stream position {position} is outside this epoch's {len(self)} batches; was the "
                "checkpoint written with other shards or batch settings?"
            )
        if position == len(self):
            epoch, position = epoch + 1, 0
        self.epoch, self._start = epoch, position

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        if (info.num_workers if info is not None else 1) != self.readers:
            raise ShardError(
                f"ShardStream planned {self.readers} readers per rank but the DataLoader has other workers"
            )
        plans = self.planner.rank_plan(self.epoch, self.rank)
        order = delivery_order([len(p.batches) for p in plans])
        start = self._start
        # Worker k plays reader (next + k) % W, so that the DataLoader's turns, which start at worker 0, continue
        # with batch `start` of an uninterrupted epoch; each reader passes over its batches delivered before it.
        following = order[start] if start < len(order) else 0
        local = (worker + following) % self.readers
        yield from self._emit(plans[local], order[:start].count(local))

    def _emit(self, plan: ShardPlan, skip: int) -> Iterator[dict[str, Any]]:
        batches = plan.batches
        pos_of = {s: k for k, s in enumerate(plan.shards)}
        wanted: dict[tuple[int, str], list[int]] = {}
        last_batch = [-1] * len(plan.shards)  # the last batch needing each shard: shards before `skip` go unread
        for b, batch in enumerate(batches):
            for i in batch:
                s = pos_of[int(self.utterances[i].extra["shard_id"])]
                wanted.setdefault((s, self.keys[i]), []).append(i)
                last_batch[s] = max(last_batch[s], b)
        arrived: dict[int, tuple[str, bytes]] = {}
        shard_error: dict[int, str] = {}
        done = -1  # shards (by reading position) fully read or given up
        nxt = 0

        def ready(b: int) -> bool:
            for i in batches[b]:
                if i not in arrived and pos_of[int(self.utterances[i].extra["shard_id"])] > done:
                    return False
            return True

        def flush() -> Iterator[dict[str, Any]]:
            nonlocal nxt
            while nxt < len(batches) and ready(nxt):
                items = [arrived.pop(i, None) for i in batches[nxt]]
                if nxt >= skip:
                    yield self._batch(batches[nxt], items, plan, shard_error)
                nxt += 1

        for s, shard in enumerate(plan.shards):
            if last_batch[s] >= skip:
                errors: list[str] = []
                for sample in iter_shard(self.urls[shard], errors.append):
                    for i in wanted.get((s, sample.key), ()):
                        arrived[i] = (sample.member, sample.audio)
                    yield from flush()
                if errors:
                    shard_error[s] = "; ".join(dict.fromkeys(errors))
                    log.warning("shard %s", errors[0])
            done = s
            yield from flush()
        yield from flush()
        assert nxt == len(batches), "every planned batch is emitted once its shards are read"

    def _batch(
        self, batch: list[int], items: list[tuple[str, bytes] | None], plan: ShardPlan, shard_error: dict[int, str]
    ) -> dict[str, Any]:
        out: list[dict[str, Any] | Skipped] = []
        for i, item in zip(batch, items):
            u = self.utterances[i]
            shard = int(u.extra["shard_id"])
            url = self.urls[shard]
            if item is None:
                why = shard_error.get(plan.shards.index(shard))
                where = f"{url}:{u.audio_filepath}"
                reason = f"{where} not read: {why}" if why else f"{where} is not in the shard (the manifest names it)"
                out.append(Skipped(u.source, where, reason))
                continue
            member, data = item
            try:
                audio = decode_audio(data, f"{url}:{member}", self.sample_rate)
                targets = self.tokenizer.encode(u.text)
            except (AudioError, OutOfVocabularyError) as e:
                out.append(Skipped(u.source, f"{url}:{member}", str(e)))
                continue
            out.append(
                {
                    "audio": torch.from_numpy(audio),
                    "targets": torch.tensor(targets, dtype=torch.long),
                    "text": self.tokenizer.decode(targets),
                    "index": i,
                    "path": f"{url}:{member}",
                }
            )
        return collate(out)


shard_collate = _identity
