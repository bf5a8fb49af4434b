"""Tiny fake raw datasets and models with known outputs, shared by the evaluation tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.v2 import functional as TF

from segrecipes.data.normalize import IMAGENET_MEAN, IMAGENET_STD

IGNORE = 255


class FakeRawDataset:
    """The raw-dataset contract: ``ds[i] -> (uint8 image (3, H, W), int64 mask (H, W))``."""

    def __init__(self, samples: list[tuple[torch.Tensor, torch.Tensor]], num_classes: int) -> None:
        self.samples = samples
        self.num_classes = num_classes
        self.class_names = [f"class{i}" for i in range(num_classes)]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.samples[index]


def random_dataset(sizes: list[tuple[int, int]], num_classes: int, seed: int = 0) -> FakeRawDataset:
    """Random images and masks (about 10% ignored pixels) of the given sizes."""
    generator = torch.Generator().manual_seed(seed)
    samples = []
    for height, width in sizes:
        image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
        mask = torch.randint(0, num_classes, (height, width), generator=generator)
        mask[torch.rand(height, width, generator=generator) < 0.1] = IGNORE
        samples.append((image, mask))
    return FakeRawDataset(samples, num_classes)


def block_dataset(sizes: list[tuple[int, int]], num_classes: int, block: int = 8, seed: int = 0) -> FakeRawDataset:
    """Masks made of ``block`` x ``block`` tiles of one class (some ignored); every pixel of image
    ``i`` has the value ``10 * i`` so that :class:`OracleModel` can tell which image it sees."""
    generator = torch.Generator().manual_seed(seed)
    samples = []
    for index, (height, width) in enumerate(sizes):
        tiles = torch.randint(0, num_classes + 1, (height // block, width // block), generator=generator)
        tiles[tiles == num_classes] = IGNORE
        mask = tiles.repeat_interleave(block, 0).repeat_interleave(block, 1)
        image = torch.full((3, height, width), 10 * index, dtype=torch.uint8)
        samples.append((image, mask))
    return FakeRawDataset(samples, num_classes)


class OracleModel(nn.Module):
    """Returns a confident one-hot of the ground truth of the image it is shown (found from the
    image's constant value, see :func:`block_dataset`), resized (nearest) to the input size."""

    def __init__(self, dataset: FakeRawDataset) -> None:
        super().__init__()
        self.dataset = dataset

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        red = images[:, 0, 0, 0] * IMAGENET_STD[0] * 255 + IMAGENET_MEAN[0] * 255
        logits = []
        for value in red.round().long().tolist():
            mask = self.dataset[value // 10][1].clamp(max=self.dataset.num_classes - 1)
            mask = TF.resize(mask[None], list(images.shape[-2:]), interpolation=TF.InterpolationMode.NEAREST_EXACT)[0]
            logits.append(F.one_hot(mask, self.dataset.num_classes).permute(2, 0, 1).float() * 20)
        return torch.stack(logits)


class PixelModel(nn.Module):
    """A 1x1 convolution: every output pixel depends only on the same input pixel."""

    def __init__(self, num_classes: int, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, num_classes, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.conv(images)


class RecordingModel(nn.Module):
    """Wraps a model and records every input it is given (a copy) and the inference-mode flag."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.inputs: list[torch.Tensor] = []
        self.inference_mode: list[bool] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.inputs.append(images.clone())
        self.inference_mode.append(torch.is_inference_mode_enabled())
        return self.inner(images)
