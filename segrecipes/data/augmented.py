"""A raw dataset plus a transform, indexed by ``(index, sample_seed)`` for reproducible augmentation."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from .transforms import TrainTransform


class AugmentedDataset(Dataset):
    """``ds[(index, sample_seed)]`` augments sample ``index`` with a generator seeded by
    ``sample_seed`` (what :class:`~segrecipes.data.sampler.TrainSampler` yields), so a sample looks
    the same whatever the number of workers and after a resume. ``ds[index]`` uses ``index`` as the seed."""

    seeded = True  # the training loader hands it (index, sample_seed) keys

    def __init__(self, raw: Dataset, transform: TrainTransform) -> None:
        self.raw = raw
        self.transform = transform

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, sample_seed = key if isinstance(key, tuple) else (key, key)
        image, mask = self.raw[index]
        return self.transform(image, mask, torch.Generator().manual_seed(sample_seed))
