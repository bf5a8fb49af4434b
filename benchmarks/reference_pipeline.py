"""The reference's ADE20k training pipeline, written again in PIL for a side-by-side benchmark.

MosaicML's ADE20k loader (the recipes' reference, composer/datasets/ade20k.py of 2022) augmented PIL
images with torchvision's PIL functions: a random square resize of ``base * U(0.5, 2)`` (bilinear
image, nearest mask), a random crop re-drawn up to 10 times while one class covers 75% or more of the
labelled pixels (no crop, and no search, when the image is not larger than the crop), a horizontal
flip with p = 0.5, the photometric distortion (brightness, contrast first or last, saturation, hue,
each with p = 0.5, through ``ImageEnhance`` and PIL's HSV), padding to the crop size, and a collate
into uint8 tensors. This module does the same with its own code (numpy's random generator stands in
for the global one), so that ``pipeline_vs_reference.py`` can time both on the same files. Not part
of the package.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageEnhance

MEAN_FILL = (123, 116, 103)  # int(255 * ImageNet mean), as the reference filled padded image borders


class ReferencePipeline:
    """``pipeline(image_path, mask_path, seed) -> (uint8 (3, S, S), int64 (S, S))`` as the reference made a
    training sample; mask values are the stored raw values (the reference mapped them on the device)."""

    def __init__(self, crop: int = 512, base: int = 512, ignore_value: int = 0) -> None:
        self.crop, self.base, self.ignore_value = crop, base, ignore_value

    def __call__(self, image_path: str, mask_path: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng(seed)
        image, mask = Image.open(image_path).convert("RGB"), Image.open(mask_path)
        side = int(self.base * rng.uniform(0.5, 2.0))
        image, mask = image.resize((side, side), Image.Resampling.BILINEAR), mask.resize((side, side), Image.NEAREST)
        image, mask = self._crop(image, mask, rng)
        if rng.random() > 0.5:
            image, mask = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), mask.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        image = self._photometric(image, rng)
        image, mask = self._pad(image, MEAN_FILL), self._pad(mask, self.ignore_value)
        return torch.from_numpy(np.asarray(image).transpose(2, 0, 1).copy()), torch.from_numpy(np.array(mask, np.int64))

    def _crop(self, image: Image.Image, mask: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, Image.Image]:
        if image.height <= self.crop and image.width <= self.crop:
            return image, mask
        box = self._box(image, rng)
        for _ in range(10):
            labels, counts = np.unique(np.asarray(mask.crop(box)), return_counts=True)
            counts = counts[labels != self.ignore_value]
            if len(counts) > 1 and counts.max() / counts.sum() < 0.75:
                break
            box = self._box(image, rng)
        return image.crop(box), mask.crop(box)

    def _box(self, image: Image.Image, rng: np.random.Generator) -> tuple[int, int, int, int]:
        height, width = min(self.crop, image.height), min(self.crop, image.width)
        top, left = int(rng.integers(0, image.height - height + 1)), int(rng.integers(0, image.width - width + 1))
        return left, top, left + width, top + height

    @staticmethod
    def _photometric(image: Image.Image, rng: np.random.Generator) -> Image.Image:
        if rng.integers(2):
            image = ImageEnhance.Brightness(image).enhance(rng.uniform(1 - 32 / 255, 1 + 32 / 255))
        contrast_last = rng.integers(2) == 0
        if not contrast_last and rng.integers(2):
            image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.5, 1.5))
        if rng.integers(2):
            image = ImageEnhance.Color(image).enhance(rng.uniform(0.5, 1.5))
        if rng.integers(2):
            hsv = np.array(image.convert("HSV"))
            hsv[..., 0] += np.int32(rng.uniform(-18 / 255, 18 / 255) * 255).astype(np.uint8)  # wraps like PIL's
            image = Image.fromarray(hsv, "HSV").convert("RGB")
        if contrast_last and rng.integers(2):
            image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.5, 1.5))
        return image

    def _pad(self, image: Image.Image, fill: int | tuple[int, int, int]) -> Image.Image:
        if image.width >= self.crop and image.height >= self.crop:
            return image
        padded = Image.new(image.mode, (self.crop, self.crop), fill)
        padded.paste(image, ((self.crop - image.width) // 2, (self.crop - image.height) // 2))
        return padded
