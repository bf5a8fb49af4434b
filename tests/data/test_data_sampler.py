"""TrainSampler: the same global batches for any world size, exact mid-epoch resume; eval sharding."""

from __future__ import annotations

import pytest

from segrecipes.data.errors import DataError
from segrecipes.data.sampler import TrainSampler


def _batches(sampler: TrainSampler) -> list[list[tuple[int, int]]]:
    keys = list(sampler)
    size = sampler.batch_size_per_rank
    return [keys[start : start + size] for start in range(0, len(keys), size)]


def _epoch(sampler: TrainSampler, epoch: int) -> list[tuple[int, int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


def test_one_epoch_is_a_permutation_without_the_last_partial_batch() -> None:
    sampler = TrainSampler(dataset_len=23, batch_size_per_rank=4, seed=0)
    keys = _epoch(sampler, 0)
    indices = [index for index, _ in keys]
    assert sampler.batches_per_epoch == 5 and len(sampler) == 20 == len(keys)
    assert len(set(indices)) == 20 and set(indices) <= set(range(23))
    assert len({seed for _, seed in keys}) == 20


def test_ranks_are_disjoint_and_cover_each_global_batch() -> None:
    single = _batches(TrainSampler(40, 6, seed=3))
    ranks = [TrainSampler(40, 2, seed=3, rank=rank, world_size=3) for rank in range(3)]
    per_rank = [_batches(sampler) for sampler in ranks]
    assert all(len(batches) == len(single) == 6 for batches in per_rank)
    for batch, global_batch in enumerate(single):
        shares = [per_rank[rank][batch] for rank in range(3)]
        flat = [key for share in shares for key in share]
        assert len({index for index, _ in flat}) == 6  # disjoint
        assert flat == global_batch  # rank r holds the r-th slice, same indices and same seeds


def test_world_one_and_world_two_see_the_same_epoch() -> None:
    single = TrainSampler(50, 8, seed=11)
    pair = [TrainSampler(50, 4, seed=11, rank=rank, world_size=2) for rank in range(2)]
    for epoch in (0, 1, 5):
        union = set(_epoch(pair[0], epoch)) | set(_epoch(pair[1], epoch))
        assert union == set(_epoch(single, epoch))


def test_ranks_yield_the_same_number_of_batches() -> None:
    samplers = [TrainSampler(37, 3, seed=0, rank=rank, world_size=4) for rank in range(4)]
    assert {len(list(sampler)) for sampler in samplers} == {9}  # 37 // 12 = 3 global batches
    assert all(len(sampler) == 9 for sampler in samplers)


def test_permutation_depends_on_seed_and_epoch_only() -> None:
    sampler = TrainSampler(30, 5, seed=1)
    first = _epoch(sampler, 2)
    assert _epoch(TrainSampler(30, 5, seed=1), 2) == first
    assert _epoch(sampler, 3) != first
    assert _epoch(TrainSampler(30, 5, seed=2), 2) != first
    assert _epoch(sampler, 2) == first


def test_resume_from_a_start_batch_is_the_tail_of_the_full_epoch() -> None:
    sampler = TrainSampler(64, 4, seed=5, rank=1, world_size=2)
    full = _epoch(sampler, 3)
    resumed = TrainSampler(64, 4, seed=5, rank=1, world_size=2)
    resumed.set_epoch(3)
    resumed.set_start_batch(5)
    assert len(resumed) == len(full) - 5 * 4
    assert list(resumed) == full[5 * 4 :]


def test_set_epoch_rewinds_the_start_batch() -> None:
    sampler = TrainSampler(20, 2, seed=0)
    sampler.set_epoch(0)
    sampler.set_start_batch(9)
    assert len(list(sampler)) == 2
    sampler.set_epoch(1)
    assert len(sampler) == 20 == len(list(sampler))
    with pytest.raises(ValueError, match="start batch 11"):
        sampler.set_start_batch(11)


def test_dataset_smaller_than_one_global_batch_is_refused() -> None:
    with pytest.raises(DataError, match="7 samples, fewer than one global batch of 8"):
        TrainSampler(7, 4, seed=0, world_size=2)
