"""Distributed, resumable sampling: which samples each rank trains on, and with which seed.

The permutation of an epoch depends on (seed, epoch) only and every sample's augmentation seed on
(seed, epoch, global position), so the global batches are the same for any world size and a run
resumed mid-epoch sees exactly the batches it would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from .errors import DataError
from .seeds import derive_seed


def steps_per_epoch(samples: int, global_batch_size: int) -> int:
    """Optimizer steps in an epoch of ``samples``: the incomplete last global batch is dropped (at least
    one step, for the clock of a split smaller than a batch, which the sampler itself refuses)."""
    return max(1, samples // global_batch_size)


class TrainSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, sample_seed)`` keys for this rank.

    Global batch ``b`` is positions ``[b G, (b + 1) G)`` of the epoch's permutation (G = batch size
    per rank x world size); rank ``r`` takes the contiguous slice ``[b G + r B, b G + (r + 1) B)``.
    The incomplete last global batch is dropped, so every rank yields the same number of batches.
    """

    def __init__(
        self, dataset_len: int, batch_size_per_rank: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        if batch_size_per_rank <= 0 or not 0 <= rank < world_size:
            raise ValueError(
                f"TrainSampler: bad batch_size_per_rank {batch_size_per_rank} or rank {rank} of {world_size}"
            )
        self.global_batch_size = batch_size_per_rank * world_size
        if dataset_len < self.global_batch_size:
            raise DataError(
                f"the training set has {dataset_len} samples, fewer than one global batch of {self.global_batch_size}"
            )
        self.dataset_len = dataset_len
        self.batch_size_per_rank = batch_size_per_rank
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_batch = 0

    @property
    def batches_per_epoch(self) -> int:
        return steps_per_epoch(self.dataset_len, self.global_batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's permutation; also rewinds to its first batch."""
        self.epoch = epoch
        self.start_batch = 0

    def set_start_batch(self, batch: int) -> None:
        """Skip the first ``batch`` batches of the current epoch (call after :meth:`set_epoch`)."""
        if not 0 <= batch <= self.batches_per_epoch:
            raise ValueError(f"start batch {batch} outside 0..{self.batches_per_epoch}")
        self.start_batch = batch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(derive_seed("epoch", self.seed, self.epoch))
        order = torch.randperm(self.dataset_len, generator=generator).tolist()
        for batch in range(self.start_batch, self.batches_per_epoch):
            first = batch * self.global_batch_size + self.rank * self.batch_size_per_rank
            for position in range(first, first + self.batch_size_per_rank):
                yield order[position], derive_seed("sample", self.seed, self.epoch, position)

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size_per_rank
