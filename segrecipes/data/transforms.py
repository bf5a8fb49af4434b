"""Joint image/mask transforms: the reference training pipeline.

Images are uint8 (3, H, W), masks int64 (H, W). All randomness comes from an explicit
``torch.Generator``, so a sample's augmentation depends on its seed only (not on the worker).
"""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as F

from .files import IGNORE_INDEX
from .normalize import MEAN_PIXEL
from .photometric import PhotometricDistortion

Box = tuple[int, int, int, int]  # top, left, height, width


def resize_pair(image: torch.Tensor, mask: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Image bilinear with antialiasing, mask nearest (labels are never blended), both as PIL does them.

    ``NEAREST_EXACT`` samples each output pixel's centre, as PIL's nearest does; torch's legacy
    ``NEAREST`` floors the coordinate and shifts the mask up to a source pixel against the image.
    """
    image = F.resize(image, [height, width], interpolation=F.InterpolationMode.BILINEAR, antialias=True)
    mask = F.resize(mask[None], [height, width], interpolation=F.InterpolationMode.NEAREST_EXACT)[0]
    return image, mask


class TrainTransform:
    """The reference pipeline (SPEC §2): random square resize, class-balanced random crop,
    horizontal flip, photometric distortion, then padding to ``crop_size``."""

    def __init__(
        self,
        crop_size: int,
        scale_range: tuple[float, float] = (0.5, 2.0),
        cat_max_ratio: float = 0.75,
        crop_retries: int = 10,
        flip_prob: float = 0.5,
        photometric: bool = True,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        if crop_size <= 0 or not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"TrainTransform: bad crop_size {crop_size} or scale_range {scale_range}")
        self.crop_size = crop_size
        self.scale_range = scale_range
        self.cat_max_ratio = cat_max_ratio
        self.crop_retries = crop_retries
        self.flip_prob = flip_prob
        self.distortion = PhotometricDistortion() if photometric else None
        self.ignore_index = ignore_index

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        low, high = self.scale_range
        scale = low + (high - low) * float(torch.rand((), generator=generator))
        side = max(1, int(self.crop_size * scale))
        image, mask = resize_pair(image, mask, side, side)

        top, left, height, width = self.crop_box(mask, generator)
        image = image[:, top : top + height, left : left + width]
        mask = mask[top : top + height, left : left + width]

        if float(torch.rand((), generator=generator)) < self.flip_prob:
            image, mask = image.flip(-1), mask.flip(-1)
        if self.distortion is not None:
            image = self.distortion(image, generator)
        return self.pad(image, mask)

    def crop_box(self, mask: torch.Tensor, generator: torch.Generator) -> Box:
        """A random crop, re-drawn up to ``crop_retries`` times while one class covers at least
        ``cat_max_ratio`` of the labelled pixels (or fewer than two classes are present), as in mmseg."""
        box = self._random_box(mask.shape, generator)
        if self.cat_max_ratio < 1:
            for _ in range(self.crop_retries):
                top, left, height, width = box
                if self._balanced(mask[top : top + height, left : left + width]):
                    break
                box = self._random_box(mask.shape, generator)
        return box

    def _random_box(self, shape: torch.Size, generator: torch.Generator) -> Box:
        height, width = min(self.crop_size, shape[0]), min(self.crop_size, shape[1])
        top = int(torch.randint(0, shape[0] - height + 1, (), generator=generator))
        left = int(torch.randint(0, shape[1] - width + 1, (), generator=generator))
        return top, left, height, width

    def _balanced(self, mask: torch.Tensor) -> bool:
        counts = torch.bincount(mask[mask != self.ignore_index])
        counts = counts[counts > 0]
        return counts.numel() > 1 and float(counts.max()) / float(counts.sum()) < self.cat_max_ratio

    def pad(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pad bottom/right to ``crop_size``: image with the mean pixel (0 after normalization), mask with ignore."""
        height, width = mask.shape
        if height == width == self.crop_size:
            return image.contiguous(), mask.contiguous()
        mean_pixel = torch.tensor(MEAN_PIXEL, dtype=torch.uint8).view(3, 1, 1)
        padded_image = mean_pixel.repeat(1, self.crop_size, self.crop_size)
        padded_mask = torch.full((self.crop_size, self.crop_size), self.ignore_index, dtype=torch.int64)
        padded_image[:, :height, :width] = image
        padded_mask[:height, :width] = mask
        return padded_image, padded_mask
