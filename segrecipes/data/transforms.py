"""Joint image/mask transforms: the reference training pipeline, as a list of named stages.

Images are uint8 (3, H, W), or float32 (C, H, W) already normalized (other bands than RGB); masks keep
their integer dtype (the file datasets give uint8, and the trainer widens them on the device), so no
stage moves 8-byte labels around. All randomness comes from an explicit ``torch.Generator``, so a
sample's augmentation depends on its seed only (not on the worker). ``TrainTransform.stages`` is what
``segrecipes bench data`` times one by one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchvision.transforms.v2 import functional as F

from .files import IGNORE_INDEX
from .normalize import MEAN_PIXEL
from .photometric import PhotometricDistortion

Box = tuple[int, int, int, int]  # top, left, height, width
Pair = tuple[torch.Tensor, torch.Tensor]
Stage = Callable[[torch.Tensor, torch.Tensor, torch.Generator], Pair]


def resize_image(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear with antialiasing, as PIL resizes an image (to within one level)."""
    return F.resize(image, [height, width], interpolation=F.InterpolationMode.BILINEAR, antialias=True)


def nearest_indices(source: int, size: int) -> torch.Tensor:
    """For each of ``size`` output pixels, the source pixel that ``NEAREST_EXACT`` resizing takes (int32).

    Computed by torch's own kernel on a row of indices, so a mask gathered with them equals the mask
    resized whole, to the pixel (torch's float rounding at exact ties included).
    """
    row = torch.arange(source, dtype=torch.float32).view(1, 1, source)
    return F.resize(row, [1, size], interpolation=F.InterpolationMode.NEAREST_EXACT).view(size).int()


class ResizedMask:
    """A mask as if resized (nearest-exact) to ``height`` x ``width``, made only where it is cropped:
    at twice the crop's side a whole resized mask is four crops' worth of work for one crop.

    Labels are never blended. ``NEAREST_EXACT`` samples each output pixel's centre, as PIL's nearest
    does; torch's legacy ``NEAREST`` floors the coordinate and shifts the mask up to a source pixel
    against the image."""

    def __init__(self, mask: torch.Tensor, height: int, width: int) -> None:
        self.mask, self.height, self.width = mask, height, width
        self.rows = None if height == mask.shape[0] else nearest_indices(mask.shape[0], height)
        self.cols = None if width == mask.shape[1] else nearest_indices(mask.shape[1], width)

    def crop(self, box: Box) -> torch.Tensor:
        """The ``box`` of the resized mask, contiguous: columns gathered first (as rows of the transposed
        source, a cheaper gather), then rows."""
        top, left, height, width = box
        columns = self.mask[:, left : left + width] if self.cols is None else self.mask.t().index_select(
            0, self.cols[left : left + width]).t()
        if self.rows is None:
            return columns[top : top + height].contiguous()
        return columns.index_select(0, self.rows[top : top + height])


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
        extra: Stage | None = None,
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
        self.extra = extra  # a user's own stage (data.transform), after the reference pipeline

    def stages(self) -> list[tuple[str, Stage]]:
        """The pipeline in order, each stage ``(image, mask, generator) -> (image, mask)``."""
        stages = [("resize", self.resize), ("crop search", self.crop), ("flip", self.flip),
                  ("photometric", self.distort), ("pad", self.pad)]
        return stages if self.extra is None else [*stages, ("data.transform", self.extra)]

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> Pair:
        for _, stage in self.stages():
            image, mask = stage(image, mask, generator)
        return image, mask

    def resize(self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> Pair:
        """The image to a square of side ``crop_size * U(scale_range)`` (the aspect ratio is not kept, as
        in the reference); the mask follows in :meth:`crop`, which resizes only the part it keeps."""
        low, high = self.scale_range
        side = max(1, int(self.crop_size * (low + (high - low) * float(torch.rand((), generator=generator)))))
        return resize_image(image, side, side), mask

    def crop(self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> Pair:
        """The class-balanced crop of the resized image, and of the mask resized to the image's size."""
        box, mask = self._search(ResizedMask(mask, image.shape[-2], image.shape[-1]), generator)
        top, left, height, width = box
        return image[:, top : top + height, left : left + width], mask

    def _search(self, mask: ResizedMask, generator: torch.Generator) -> tuple[Box, torch.Tensor]:
        """A random crop of ``mask``, re-drawn up to ``crop_retries`` times while one class covers at least
        ``cat_max_ratio`` of the labelled pixels (or fewer than two classes are present), as in mmseg.
        A mask no larger than the crop is kept whole without drawing or searching, as the reference did."""
        if mask.height <= self.crop_size and mask.width <= self.crop_size:
            box = (0, 0, mask.height, mask.width)
            return box, mask.crop(box)
        box = self._random_box(mask, generator)
        cropped = mask.crop(box)
        if self.cat_max_ratio < 1:
            for _ in range(self.crop_retries):
                if self._balanced(cropped):
                    break
                box = self._random_box(mask, generator)
                cropped = mask.crop(box)
        return box, cropped

    def _random_box(self, mask: ResizedMask, generator: torch.Generator) -> Box:
        height, width = min(self.crop_size, mask.height), min(self.crop_size, mask.width)
        top = int(torch.randint(0, mask.height - height + 1, (), generator=generator))
        left = int(torch.randint(0, mask.width - width + 1, (), generator=generator))
        return top, left, height, width

    def _balanced(self, mask: torch.Tensor) -> bool:
        counts = torch.bincount(mask.flatten(), minlength=self.ignore_index + 1)
        counts[self.ignore_index] = 0
        largest, labelled, present = counts.max(), counts.sum(), counts.count_nonzero()
        return int(present) > 1 and float(largest) / float(labelled) < self.cat_max_ratio

    def flip(self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> Pair:
        if float(torch.rand((), generator=generator)) < self.flip_prob:
            return image.flip(-1), mask.flip(-1)
        return image, mask

    def distort(self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> Pair:
        """Photometric distortion of 8-bit RGB only: brightness, contrast, saturation and hue mean nothing
        for other bands or for normalized floats, which pass unchanged (and draw no random numbers)."""
        if self.distortion is None or image.dtype != torch.uint8 or image.shape[0] != 3:
            return image, mask
        return self.distortion(image, generator), mask

    def pad(self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None) -> Pair:
        """Pad bottom/right to ``crop_size``: image with the mean pixel (0 after normalization: uint8 RGB gets
        ImageNet's mean pixel, normalized floats 0), mask with ignore."""
        height, width = mask.shape
        if height == width == self.crop_size:
            return image.contiguous(), mask.contiguous()
        size = self.crop_size
        padded_image = torch.empty(image.shape[0], size, size, dtype=image.dtype)
        padded_image[:, :height, :width] = image
        rgb = image.dtype == torch.uint8 and image.shape[0] == 3
        fill = torch.tensor(MEAN_PIXEL if rgb else 0, dtype=image.dtype).expand(image.shape[0]).reshape(-1, 1, 1)
        padded_image[:, height:] = fill  # only the border is filled: not the whole image first, then overwritten
        padded_image[:, :height, width:] = fill
        padded_mask = torch.full((size, size), self.ignore_index, dtype=mask.dtype)
        padded_mask[:height, :width] = mask
        return padded_image, padded_mask
