"""The reference photometric distortion (SPEC §2), vectorized on a uint8 image tensor.

Brightness multiplies by U(1 - 32/255, 1 + 32/255), contrast multiplies by U(0.5, 1.5), saturation
multiplies the HSV saturation by U(0.5, 1.5) and hue rotates by U(-18/255, 18/255) of the colour
circle; each happens with p = 0.5 and contrast goes first or last at random (the MosaicML ADE20k
pipeline, itself modelled on mmseg's ``PhotoMetricDistortion``).
"""

from __future__ import annotations

import torch


def rgb_to_hsv(image: torch.Tensor) -> torch.Tensor:
    """Float RGB (3, H, W) in [0, 255] -> HSV with hue and saturation in [0, 1) and value in [0, 255]."""
    red, green, blue = image
    value, largest = image.max(dim=0)
    chroma = value - image.min(dim=0).values
    saturation = torch.where(value > 0, chroma / value.clamp_min(1e-6), 0)
    safe_chroma = chroma.clamp_min(1e-6)
    hue_sixths = torch.where(
        largest == 0,
        (green - blue) / safe_chroma,
        torch.where(largest == 1, 2 + (blue - red) / safe_chroma, 4 + (red - green) / safe_chroma),
    )
    hue = torch.where(chroma > 0, hue_sixths / 6 % 1.0, 0)
    return torch.stack([hue, saturation, value])


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hsv`: channel n = V - V S clamp(min(k, 4 - k), 0, 1), k = (n + 6 H) mod 6."""
    hue, saturation, value = hsv
    offsets = torch.tensor([5.0, 3.0, 1.0]).view(3, 1, 1)
    k = (offsets + 6 * hue) % 6
    return value - value * saturation * torch.minimum(k, 4 - k).clamp(0, 1)


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

        pixels = image.float()
        if coin():
            pixels = (pixels * uniform(1 - self.brightness_delta, 1 + self.brightness_delta)).clamp(0, 255)
        contrast_first = coin()
        if contrast_first and coin():
            pixels = (pixels * uniform(*self.contrast_range)).clamp(0, 255)
        saturation = uniform(*self.saturation_range) if coin() else None
        hue_shift = uniform(-self.hue_delta, self.hue_delta) if coin() else None
        if saturation is not None or hue_shift is not None:
            hsv = rgb_to_hsv(pixels)
            if saturation is not None:
                hsv[1] = (hsv[1] * saturation).clamp(0, 1)
            if hue_shift is not None:
                hsv[0] = (hsv[0] + hue_shift) % 1.0
            pixels = hsv_to_rgb(hsv)
        if not contrast_first and coin():
            pixels = (pixels * uniform(*self.contrast_range)).clamp(0, 255)
        return pixels.round().clamp(0, 255).to(torch.uint8)
