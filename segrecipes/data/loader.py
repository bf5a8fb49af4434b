"""The training DataLoader: workers decode and augment, the device normalizes (see normalize.py)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from .memory import keep_freed_memory, keep_freed_memory_in_worker
from .sampler import TrainSampler


class _IndexOnly(Dataset):
    """A dataset that takes plain indices behind the sampler's ``(index, sample_seed)`` keys."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> object:
        return self.dataset[key[0]]


def build_train_loader(
    dataset: Dataset,
    sampler: TrainSampler,
    batch_size: int,
    num_workers: int = 0,
    pin_memory: bool = False,
    persistent_workers: bool = False,
) -> DataLoader:
    """Batches of ``dataset`` in the sampler's order; ``batch_size`` must divide the sampler's
    per-rank batch so no loader batch spans two global batches.

    A dataset with ``seeded = True`` (:class:`~segrecipes.data.augmented.AugmentedDataset`) gets the
    sampler's ``(index, sample_seed)`` keys, so its augmentation is reproducible; any other dataset
    (a user's own) gets the index. The processes that decode keep their freed memory (memory.py).
    """
    if batch_size <= 0 or sampler.batch_size_per_rank % batch_size:
        raise ValueError(
            f"batch_size {batch_size} must divide the sampler's batch_size_per_rank {sampler.batch_size_per_rank}"
        )
    keep_freed_memory()  # this process decodes when num_workers is 0, and forked workers inherit it
    return DataLoader(
        dataset if getattr(dataset, "seeded", False) else _IndexOnly(dataset),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory and torch.cuda.is_available(),
        persistent_workers=persistent_workers and num_workers > 0,
        drop_last=True,
        worker_init_fn=keep_freed_memory_in_worker,
        # its own generator: creating an iterator must not consume the global RNG (dropout), or a
        # resumed run would diverge; augmentation randomness comes from the sampler's seeds anyway
        generator=torch.Generator().manual_seed(sampler.seed),
    )
