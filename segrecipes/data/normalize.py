"""ImageNet normalization, done on the device so DataLoader workers ship compact uint8 tensors."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The mean as a uint8 pixel: what padded image borders are filled with before normalization.
MEAN_PIXEL = tuple(round(255 * m) for m in IMAGENET_MEAN)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (..., 3, H, W) -> float32 normalized with ImageNet statistics.

    Floating-point images are taken to be normalized already (a user's own dataset may do it) and
    are returned as they are: the dtype says which it is.
    """
    if images.is_floating_point():
        return images
    mean, std = _statistics(images.device)
    return (images.float() - mean) / std


@functools.cache
def _statistics(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std (x 255) on ``device``, made once: a tensor built from host values for every batch is a
    host-to-device copy, which waits for the GPU (``torch.cuda.set_sync_debug_mode`` flags it)."""
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD, device=device).view(3, 1, 1) * 255
    return mean, std


def on_device(images: torch.Tensor, target: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch moved to ``device``: uint8 images normalized there (:func:`normalize`); class indices, which
    travel as uint8 (an eighth of int64's bytes), widened to int64; a dense float target (a user's own)
    moved as it is."""
    images = normalize(images.to(device, non_blocking=True))
    target = target.to(device, non_blocking=True)
    return images, target if target.is_floating_point() else target.long()


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel mean and std in the stored units (``data.mean``/``data.std``): images with other
    statistics than ImageNet's, or other channels than RGB, are normalized where they are read, and
    reach the device as float32 (which :func:`normalize` passes through)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of(cls, mean: Sequence[float], std: Sequence[float]) -> ChannelStats:
        return cls(tuple(float(m) for m in mean), tuple(float(s) for s in std))

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """(C, H, W) in stored units -> float32 normalized per channel."""
        mean = torch.tensor(self.mean).view(-1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        return (image.float() - mean) / std
