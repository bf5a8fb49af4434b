"""The training DataLoader on ADE20k-sized files written on the spot, for a machine with no dataset on it.

:func:`write_pairs` draws ``unique`` scenes (smooth gradients and shaded ellipses, so the JPEGs compress
and decode like photographs; noise would not) with uint8 PNG masks in ADE20k's values (0 unlabelled,
1..150 the classes), in the ``folder:`` layout (data/folder.py), then hard-links them under more names
until the split holds enough batches: every file is still read and decoded anew, and the page cache
holds them, as it holds ADE20k (about 1 GB) on a training machine. :func:`measure_data` runs
:func:`~segrecipes.bench.pipeline.measure_pipeline` on it under the ``mild`` recipe's augmentation, per
worker count over ``batches_per_worker`` batches per worker, so the batches the workers prefetched
before the clock started are a small share of those timed.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torchvision.io import write_jpeg, write_png

from segrecipes.bench.gpu.workload import CLASSES
from segrecipes.bench.pipeline import PipelineReport, measure_pipeline
from segrecipes.config import load_config
from segrecipes.run import training_data

RECIPE = "mild"
JPEG_QUALITY = 90
BLOBS = 8
NOISE_STD = 3.0


@dataclass(frozen=True)
class DataSizes:
    workers: tuple[int, ...]
    unique: int  # scenes drawn; the rest of the split are hard links to them
    height: int
    width: int
    crop: int
    batch: int
    batches_per_worker: int

    def batches(self, workers: int) -> int:
        return self.batches_per_worker * max(1, workers)


@dataclass(frozen=True)
class SampleFiles:
    pairs: int
    unique: int
    height: int
    width: int
    jpeg_kb_mean: float
    png_kb_mean: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _scene(height: int, width: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A uint8 (3, H, W) image and its (H, W) mask: a shaded background and ``BLOBS`` shaded ellipses,
    each a class, with unlabelled rims as ADE20k has between objects."""

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(shape, generator=generator)

    def label() -> int:
        return int(torch.randint(1, CLASSES + 1, (), generator=generator))

    y = torch.linspace(-1, 1, height).view(height, 1)
    x = torch.linspace(-1, 1, width).view(1, width) * (width / height)
    wave = torch.sin(uniform(1, 5, 1, 1, 1) * x + uniform(1, 5, 1, 1, 1) * y + uniform(0, math.tau, 1, 1, 1))
    image = uniform(40, 215, 3, 1, 1) + uniform(-60, 60, 3, 1, 1) * y + uniform(-30, 30, 3, 1, 1) * x + 15 * wave
    mask = torch.full((height, width), label(), dtype=torch.uint8)
    for _ in range(BLOBS):
        centre_y, centre_x, angle = float(uniform(-1, 1)), float(uniform(-1, 1)) * width / height, float(uniform(0, 3))
        radius_y, radius_x = uniform(0.1, 0.5, 2).tolist()
        u = ((x - centre_x) * math.cos(angle) + (y - centre_y) * math.sin(angle)) / radius_x
        v = (-(x - centre_x) * math.sin(angle) + (y - centre_y) * math.cos(angle)) / radius_y
        distance = u.square() + v.square()
        inside = distance < 1
        image = torch.where(inside, uniform(0, 255, 3, 1, 1) + uniform(-50, 50, 3, 1, 1) * u, image)
        mask[inside] = label()
        mask[inside & (distance > 0.9)] = 0
    image = image + NOISE_STD * torch.randn(image.shape, generator=generator)
    return image.round().clamp(0, 255).to(torch.uint8), mask


def write_pairs(root: Path, sizes: DataSizes, pairs: int, seed: int = 0) -> SampleFiles:
    """``pairs`` image/mask pairs in ``root/images/train`` and ``root/masks/train``, ``sizes.unique`` of them drawn."""
    images, masks = root / "images" / "train", root / "masks" / "train"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    generator = torch.Generator().manual_seed(seed)
    for index in range(sizes.unique):
        image, mask = _scene(sizes.height, sizes.width, generator)
        write_jpeg(image, str(images / f"{index:06d}.jpg"), quality=JPEG_QUALITY)
        write_png(mask[None], str(masks / f"{index:06d}.png"))
    for index in range(sizes.unique, pairs):
        source = index % sizes.unique
        os.link(images / f"{source:06d}.jpg", images / f"{index:06d}.jpg")
        os.link(masks / f"{source:06d}.png", masks / f"{index:06d}.png")

    def kb_mean(folder: Path, suffix: str) -> float:
        total = sum((folder / f"{index:06d}{suffix}").stat().st_size for index in range(sizes.unique))
        return total / sizes.unique / 1e3

    return SampleFiles(pairs, sizes.unique, sizes.height, sizes.width, kb_mean(images, ".jpg"), kb_mean(masks, ".png"))


def measure_data(root: Path, sizes: DataSizes) -> tuple[SampleFiles, list[PipelineReport]]:
    """Write the files into the empty folder ``root``, then time the training DataLoader on them per worker count."""
    pairs = (max(map(sizes.batches, sizes.workers)) + 1) * sizes.batch
    files = write_pairs(root, sizes, pairs)
    config = load_config(RECIPE, None, [f"data.spec=folder:{root}", f"data.num_classes={CLASSES}",
                                        "data.reduce_zero_label=true", f"data.crop_size={sizes.crop}"])
    dataset = training_data(config)
    reports = [report for workers in sizes.workers
               for report in measure_pipeline(dataset, [workers], sizes.batch, sizes.batches(workers),
                                              config.train.seed, config.data.pin_memory)]
    return files, reports
