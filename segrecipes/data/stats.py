"""What a split holds: labelled pixels per class, per-channel mean and std, image sizes; class weights from them.

``segrecipes data stats`` prints them; ``loss.class_weights: auto`` and ``data.mean``/``data.std: auto``
read them through :func:`cached_stats`, computed once per set of files: the cache is keyed like the data
checks' (:func:`~segrecipes.data.check.files_fingerprint`), so adding, rewriting or remapping files
recomputes them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import warnings
from collections import Counter
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from segrecipes.cache import cache_folder, write_json
from segrecipes.disk import write_failure

from .settings import DataSettings
from .check import files_fingerprint
from .errors import DataError
from .files import IGNORE_INDEX, SegmentationFiles
from .spec import build_raw_dataset

_STATS_VERSION = 1
_LABEL_VALUES = 256  # uint8 class indices, 255 = ignore


class LabelledImages(Protocol):
    """Any dataset of (image (C, H, W), class indices (H, W)) pairs with class names."""

    class_names: list[str]

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass(frozen=True)
class DatasetStats:
    """Pixel counts and channel statistics of one split; JSON-friendly (see :meth:`to_dict`)."""

    spec: str
    split: str
    num_images: int
    class_names: list[str]
    class_pixels: list[int]  # labelled pixels of each class
    class_image_pixels: list[int]  # for each class, all pixels of the images in which it appears
    ignored_pixels: int
    channel_mean: list[float]  # per channel, in stored units, over every pixel of every image
    channel_std: list[float]  # population standard deviation (divided by the pixel count)
    sizes: dict[str, int]  # "WIDTHxHEIGHT" -> images of that size, most common first

    @property
    def frequencies(self) -> list[float]:
        """Each class's share of the labelled pixels."""
        total = sum(self.class_pixels)
        return [pixels / total if total else 0.0 for pixels in self.class_pixels]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetStats:
        return cls(**data)


def dataset_stats(
    dataset: LabelledImages, spec: str, split: str, workers: int | None = None, exclude: Collection[int] = ()
) -> DatasetStats:
    """Count every image of ``dataset`` but those at ``exclude`` (what ``data.skip_bad`` leaves out): its
    ``read_stored(i)`` when it has one (the stored pixels, before any normalization), else ``dataset[i]``.
    Sums and sums of squares are float64, exact for 8-bit images."""
    skipped = set(exclude)
    indices = [index for index in range(len(dataset)) if index not in skipped]
    if not indices:
        raise DataError(f"{spec}: no images in split {split!r}")
    read: Callable[[int], tuple[torch.Tensor, torch.Tensor]] = getattr(dataset, "read_stored", dataset.__getitem__)
    num_classes = len(dataset.class_names)

    def count(index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int]]:
        """Per image, only small sums leave the worker thread, never the pixels."""
        image, labels = read(index)
        values = image.flatten(1).double()
        pixels = torch.bincount(labels.flatten().long(), minlength=_LABEL_VALUES)
        present = (pixels[:num_classes] > 0).long() * labels.numel()
        return values.sum(1), values.square().sum(1), pixels, present, (image.shape[-1], image.shape[-2])

    sums = squares = label_pixels = image_pixels = None
    sizes: Counter[str] = Counter()
    total = 0
    with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
        for image_sums, image_squares, pixels, present, (width, height) in pool.map(count, indices):
            if sums is None:
                sums, squares, label_pixels, image_pixels = image_sums, image_squares, pixels, present
            else:
                sums, squares = sums + image_sums, squares + image_squares
                label_pixels, image_pixels = label_pixels + pixels, image_pixels + present
            sizes[f"{width}x{height}"] += 1
            total += width * height
    mean = sums / total
    std = (squares / total - mean.square()).clamp_min(0).sqrt()
    return DatasetStats(
        spec, split, len(indices), list(dataset.class_names), label_pixels[:num_classes].tolist(),
        image_pixels.tolist(), int(label_pixels[IGNORE_INDEX]), mean.tolist(), std.tolist(), dict(sizes.most_common()),
    )


def median_frequency_weights(stats: DatasetStats) -> list[float]:
    """Median-frequency balancing (Eigen & Fergus 2015, SegNet): ``w_c = median(freq) / freq_c`` with
    ``freq_c`` = pixels of class c / pixels of the images in which c appears, the median over the classes
    present. Rare classes weigh more, a class of median frequency weighs 1.

    A class absent from the split gets 1.0: it never occurs in training, so its weight only matters if a
    user's transform makes it appear, and then 0 would hide it.
    """
    frequency = {index: pixels / image_pixels for index, (pixels, image_pixels)
                 in enumerate(zip(stats.class_pixels, stats.class_image_pixels)) if pixels > 0}
    if not frequency:
        raise DataError(f"{stats.spec}: split {stats.split!r} has no labelled pixels; no class weights can be derived")
    median = statistics.median(frequency.values())
    return [median / frequency[index] if index in frequency else 1.0 for index in range(len(stats.class_names))]


def cached_stats(
    cfg: DataSettings, split: str = "train", cache_dir: Path | None = None, exclude: Collection[int] = ()
) -> DatasetStats:
    """:func:`dataset_stats` of ``split`` (without the pairs at ``exclude``), read from ``cache_dir`` (default:
    the data checks' cache folder) when its files and label mapping are unchanged. Synthetic data has no
    files to key a cache by, and is quick to count: computed every time."""
    dataset = build_raw_dataset(cfg, split)
    if not isinstance(dataset, SegmentationFiles):
        return dataset_stats(dataset, cfg.spec, split, exclude=exclude)
    layout = dataset.layout
    key = files_fingerprint(layout, f"stats v{_STATS_VERSION} channels={layout.channels} without {sorted(exclude)}")
    path = (cache_dir or cache_folder()) / "data-stats" / f"{key}.json"
    try:
        return dataclasses.replace(DatasetStats.from_dict(json.loads(path.read_text())), spec=cfg.spec, split=split)
    except (OSError, ValueError, TypeError):  # absent, unreadable or from another version: count again
        pass
    stats = dataset_stats(dataset, cfg.spec, split, exclude=exclude)
    try:
        write_json(path, stats.to_dict())
    except OSError as error:
        warnings.warn(f"{write_failure('the data statistics cache', path, error)}; the next run counts again",
                      stacklevel=2)
    return stats


