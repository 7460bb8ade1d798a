import numpy as np
import pytest

from asr.data.sampler import DynamicBucketingSampler, padding_fraction


def librispeech_like(n: int = 28000, seed: int = 0) -> np.ndarray:
    """Gamma-distributed durations clipped to 1-35 s, mean about 12 s, like LibriSpeech training sets."""
    d = np.random.default_rng(seed).gamma(4.0, 3.1, size=2 * n)
    return d[(d >= 1) & (d <= 35)][:n]


def short_utterances(n: int = 28000, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(1, 8, size=n)


def epoch_batches(sampler: DynamicBucketingSampler, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.fixture(scope="module")
def durations() -> np.ndarray:
    return librispeech_like(3000)


def test_every_utterance_once_per_epoch(durations):
    sampler = DynamicBucketingSampler(durations, 300, seed=1)
    for epoch in range(3):
        batches = epoch_batches(sampler, epoch)
        assert len(batches) == len(sampler)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(len(durations)))
        assert sampler.num_dropped == 0


def test_padded_seconds_respect_the_limit(durations):
    for limit, cap in ((300, None), (100, None), (300, 8)):
        sampler = DynamicBucketingSampler(durations, limit, max_batch_size=cap)
        for epoch in range(2):
            for b in epoch_batches(sampler, epoch):
                assert len(b) * durations[b].max() <= limit
                assert cap is None or len(b) <= cap


def test_overlong_utterance_is_a_batch_of_its_own():
    d = [1.0, 2.0, 50.0, 1.5, 3.0]
    batches = list(DynamicBucketingSampler(d, 10, seed=0))
    assert [2] in batches
    assert sorted(i for b in batches for i in b) == list(range(5))


@pytest.mark.parametrize("replicas", [2, 3])
@pytest.mark.parametrize("drop_last", [False, True])
def test_distributed_shards_are_equal_disjoint_and_complete(durations, replicas, drop_last):
    for epoch in range(2):
        samplers = [
            DynamicBucketingSampler(durations, 300, seed=5, num_replicas=replicas, rank=r, drop_last=drop_last)
            for r in range(replicas)
        ]
        shards = [epoch_batches(s, epoch) for s in samplers]
        assert len({len(s) for s in samplers}) == 1
        assert all(len(shard) == len(samplers[0]) for shard in shards)
        seen = [i for shard in shards for b in shard for i in b]
        assert len(seen) == len(set(seen)), "an utterance was given out twice"
        dropped = samplers[0].num_dropped
        assert len(seen) + dropped == len(durations)
        if not drop_last:
            assert dropped == 0


def test_too_few_utterances_for_every_rank_drops_and_counts():
    samplers = [DynamicBucketingSampler([2.0, 3.0], 100, num_replicas=3, rank=r) for r in range(3)]
    assert [len(s) for s in samplers] == [0, 0, 0]
    assert all(list(s) == [] for s in samplers)
    assert samplers[0].num_dropped == 2


def test_deterministic_under_seed_and_epoch(durations):
    a = DynamicBucketingSampler(durations, 300, seed=7)
    b = DynamicBucketingSampler(durations, 300, seed=7)
    assert epoch_batches(a, 4) == epoch_batches(b, 4)
    c = DynamicBucketingSampler(durations, 300, seed=8)
    assert epoch_batches(a, 4) != epoch_batches(c, 4)


def test_epochs_differ_in_order_and_in_membership(durations):
    sampler = DynamicBucketingSampler(durations, 300)
    first, second = epoch_batches(sampler, 0), epoch_batches(sampler, 1)
    assert first != second
    assert {tuple(sorted(b)) for b in first} != {tuple(sorted(b)) for b in second}


def test_length_is_the_same_every_epoch(durations):
    sampler = DynamicBucketingSampler(durations, 300, num_replicas=2, rank=1, sortagrad=True)
    n = len(sampler)
    assert all(len(epoch_batches(sampler, e)) == n for e in range(4))


def test_sortagrad_first_epoch_is_ascending(durations):
    sampler = DynamicBucketingSampler(durations, 300, sortagrad=True)
    longest = [durations[b].max() for b in epoch_batches(sampler, 0)]
    assert longest == sorted(longest)
    later = [durations[b].max() for b in epoch_batches(sampler, 1)]
    assert later != sorted(later)


def test_no_shuffle_is_ascending_and_fixed(durations):
    sampler = DynamicBucketingSampler(durations, 300, shuffle=False)
    first = epoch_batches(sampler, 0)
    assert first == epoch_batches(sampler, 3)
    flat = [i for b in first for i in b]
    assert list(durations[flat]) == sorted(durations)


@pytest.mark.parametrize(
    "make, limit",
    [(librispeech_like, 600), (librispeech_like, 1200), (short_utterances, 600), (short_utterances, 1200)],
)
def test_padding_stays_under_five_percent(make, limit):
    d = make()
    sampler = DynamicBucketingSampler(d, limit)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        assert sampler.stats().padding_fraction <= 0.05


def test_stats_report_the_epoch(durations):
    sampler = DynamicBucketingSampler(durations, 300)
    stats = sampler.stats()
    batches = sampler.global_batches()
    assert stats.num_batches == len(batches) == len(sampler)
    assert stats.mean_batch_size == pytest.approx(len(durations) / len(batches))
    assert stats.padding_fraction == pytest.approx(padding_fraction(durations, batches))
    assert 0 < stats.mean_padded_seconds <= 300


def test_padding_fraction_definition():
    assert padding_fraction([1.0, 1.0, 2.0], [[0, 1], [2]]) == pytest.approx(0.0)
    assert padding_fraction([1.0, 3.0], [[0, 1]]) == pytest.approx(1 - 4 / 6)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        DynamicBucketingSampler([1.0], 0)
    with pytest.raises(ValueError):
        DynamicBucketingSampler([-1.0], 10)
    with pytest.raises(ValueError):
        DynamicBucketingSampler([1.0], 10, num_replicas=2, rank=2)


@pytest.mark.parametrize("replicas", [1, 3])
def test_state_dict_resumes_mid_epoch_with_the_next_batch(durations, replicas):
    for rank in range(replicas):
        whole = DynamicBucketingSampler(durations, 300, seed=4, num_replicas=replicas, rank=rank)
        whole.set_epoch(2)
        expected = list(whole)
        first = DynamicBucketingSampler(durations, 300, seed=4, num_replicas=replicas, rank=rank)
        first.set_epoch(2)
        it = iter(first)
        taken = [next(it) for _ in range(5)]
        state = first.state_dict()
        assert state == {"epoch": 2, "position": 5}
        resumed = DynamicBucketingSampler(durations, 300, seed=4, num_replicas=replicas, rank=rank)
        resumed.load_state_dict(state)
        resumed.set_epoch(2)  # Lightning may set the same epoch again: the position stands
        assert taken + list(resumed) == expected
        resumed.set_epoch(3)  # the next epoch starts from its first batch
        assert list(resumed) == epoch_batches(whole, 3)


def test_state_at_the_end_of_an_epoch_resumes_with_the_next_epoch(durations):
    sampler = DynamicBucketingSampler(durations, 300, seed=4)
    list(sampler)
    resumed = DynamicBucketingSampler(durations, 300, seed=4)
    resumed.load_state_dict(sampler.state_dict())
    assert resumed.epoch == 1 and list(resumed) == epoch_batches(sampler, 1)
    with pytest.raises(ValueError, match="outside this epoch"):
        resumed.load_state_dict({"epoch": 0, "position": len(resumed) + 1})


def test_resumable_loader_counts_only_delivered_batches(durations):
    """With worker processes the sampler runs ahead of the loop; the loader's state is what the loop received."""
    import torch
    from torch.utils.data import Dataset

    from asr.training.datamodule import ResumableDataLoader

    class Indices(Dataset):
        def __len__(self):
            return len(durations)

        def __getitem__(self, i):
            return i

    def loader(sampler):
        return ResumableDataLoader(Indices(), batch_sampler=sampler, collate_fn=list, num_workers=1, prefetch_factor=4)

    torch.manual_seed(0)
    sampler = DynamicBucketingSampler(durations[:600], 100, seed=2)
    whole = [b for b in loader(sampler)]
    dl = loader(DynamicBucketingSampler(durations[:600], 100, seed=2))
    it = iter(dl)
    first = [next(it) for _ in range(3)]
    assert dl.batch_sampler.state_dict()["position"] > 3  # workers drew ahead
    state = dl.state_dict()
    assert state == {"epoch": 0, "position": 3}
    del it
    resumed = loader(DynamicBucketingSampler(durations[:600], 100, seed=2))
    resumed.load_state_dict(state)
    assert first + list(resumed) == whole
