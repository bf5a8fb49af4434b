"""The reference photometric distortion (SPEC §2) on a uint8 image tensor.

The reference (MosaicML's ADE20k pipeline, modelled on mmseg's ``PhotoMetricDistortion``) applies
torchvision's colour functions, each with p = 0.5: brightness times U(1 - 32/255, 1 + 32/255);
contrast first or last at random, U(0.5, 1.5), blending with the image's grey mean; saturation
U(0.5, 1.5), blending with the greyscale image; hue rotated by U(-18/255, 18/255) of the colour
circle. The same functions are used here, on tensors, each rounding back to uint8 as the
reference's PIL images did.
"""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as F


class PhotometricDistortion:
    """``distortion(image_uint8, generator) -> image_uint8``; defaults are the reference's (SPEC §2)."""

    def __init__(
        self,
        brightness_delta: float = 32 / 255,
        contrast_range: tuple[float, float] = (0.5, 1.5),
        saturation_range: tuple[float, float] = (0.5, 1.5),
        hue_delta: float = 18 / 255,
    ) -> None:
        self.brightness_delta = brightness_delta
        self.contrast_range = contrast_range
        self.saturation_range = saturation_range
        self.hue_delta = hue_delta

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        def coin() -> bool:
            return bool(torch.rand((), generator=generator) < 0.5)

        def uniform(low: float, high: float) -> float:
            return low + (high - low) * float(torch.rand((), generator=generator))

        if coin():
            image = F.adjust_brightness(image, uniform(1 - self.brightness_delta, 1 + self.brightness_delta))
        contrast_first = coin()
        if contrast_first and coin():
            image = F.adjust_contrast(image, uniform(*self.contrast_range))
        if coin():
            image = F.adjust_saturation(image, uniform(*self.saturation_range))
        if coin():
            image = F.adjust_hue(image, uniform(-self.hue_delta, self.hue_delta))
        if not contrast_first and coin():
            image = F.adjust_contrast(image, uniform(*self.contrast_range))
        return image
