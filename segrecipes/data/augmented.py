"""A raw dataset plus a transform, indexed by ``(index, sample_seed)`` for reproducible augmentation."""

from __future__ import annotations

import multiprocessing
import warnings

import torch
from torch.utils.data import Dataset

from segrecipes.errors import one_line

from .errors import DataError
from .transforms import TrainTransform


class AugmentedDataset(Dataset):
    """``ds[(index, sample_seed)]`` augments sample ``index`` with a generator seeded by
    ``sample_seed`` (what :class:`~segrecipes.data.sampler.TrainSampler` yields), so a sample looks
    the same whatever the number of workers and after a resume. ``ds[index]`` uses ``index`` as the seed.

    A file that breaks after the run's checks (deleted, truncated, replaced) is a :class:`DataError`
    naming it; with ``replace_unreadable`` (``data.skip_bad``) the sample is replaced by the next
    readable one (index + 1, + 2, ..., same seed: deterministic) and counted in :attr:`replaced`, which
    the DataLoader's worker processes share."""

    seeded = True  # the training loader hands it (index, sample_seed) keys

    def __init__(self, raw: Dataset, transform: TrainTransform, replace_unreadable: bool = False) -> None:
        self.raw = raw
        self.transform = transform
        self._replaced = multiprocessing.Value("i", 0) if replace_unreadable else None

    @property
    def replaced(self) -> int:
        """Samples replaced so far, by this process and its workers."""
        return self._replaced.value if self._replaced is not None else 0

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, sample_seed = key if isinstance(key, tuple) else (key, key)
        image, mask = self._read(index)
        return self.transform(image, mask, torch.Generator().manual_seed(sample_seed))

    def _read(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        for offset in range(len(self.raw)):
            try:
                return self.raw[(index + offset) % len(self.raw)]
            except (DataError, OSError) as error:
                if self._replaced is None:
                    raise DataError(one_line(error)) from None
                with self._replaced.get_lock():
                    self._replaced.value += 1
                warnings.warn(f"{one_line(error)}; data.skip_bad: the sample is replaced by the next readable one",
                              stacklevel=2)
        raise DataError("data.skip_bad: no readable training sample is left")
