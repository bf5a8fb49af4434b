"""The reference photometric distortion (SPEC §2) on a uint8 image tensor, at a fraction of its cost.

The reference (MosaicML's ADE20k loader, modelled on mmseg's ``PhotoMetricDistortion``) applies
torchvision's colour functions, each with p = 0.5: brightness times U(1 - 32/255, 1 + 32/255);
contrast first or last at random, U(0.5, 1.5), blending with the image's grey mean; saturation
U(0.5, 1.5), blending with the greyscale image; hue rotated by U(-18/255, 18/255) of the colour
circle; each step rounds back to 8 bits.

Brightness, contrast and saturation are torchvision's formulas with the same float32 operations in the
same order, on one float copy of the image that each step truncates in place (what the round trip to
uint8 did), so they are bit-exact without a uint8 and a float temporary per step. The hue rotation is
integer arithmetic on the hexagonal hue of each pixel (max and min are kept, the middle channel moves):
no float HSV image, no ``torch.where``; it is within one level of torchvision's ``adjust_hue``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# ITU-R 601 luma weights, in the order and precision of torchvision's rgb_to_grayscale
_LUMA = (0.2989, 0.587, 0.114)
# Hue in sixteenths of a level: the shift is rounded to 1/16 of a level before the output is truncated.
# Every intermediate stays within int16: |six times the hue| <= 6c after the shift, 16 * 6 * 255 < 2**15.
_HUE_BITS = 4


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
        steps = self.draw(generator)
        if not steps:  # one sample in sixteen: no copy at all
            return image
        work = image.to(torch.float32)
        for step, factor in steps:
            step(work, factor)
        return work.to(torch.uint8)

    def draw(self, generator: torch.Generator) -> list[tuple[Callable[[torch.Tensor, float], None], float]]:
        """The steps to apply and their factors, drawn in the reference's order."""
        def coin() -> bool:
            return bool(torch.rand((), generator=generator) < 0.5)

        def uniform(low: float, high: float) -> float:
            return low + (high - low) * float(torch.rand((), generator=generator))

        steps = []
        if coin():
            steps.append((brightness, uniform(1 - self.brightness_delta, 1 + self.brightness_delta)))
        contrast_first = coin()
        if contrast_first and coin():
            steps.append((contrast, uniform(*self.contrast_range)))
        if coin():
            steps.append((saturation, uniform(*self.saturation_range)))
        if coin():
            steps.append((hue, uniform(-self.hue_delta, self.hue_delta)))
        if not contrast_first and coin():
            steps.append((contrast, uniform(*self.contrast_range)))
        return steps


def _grey(work: torch.Tensor) -> torch.Tensor:
    """The truncated luma (1, H, W) of an 8-bit-valued float image (torchvision's for a uint8 image)."""
    red, green, blue = work.unbind(0)
    return red.mul(_LUMA[0]).add_(green, alpha=_LUMA[1]).add_(blue, alpha=_LUMA[2]).floor_().unsqueeze(0)


def _blend_(work: torch.Tensor, other: torch.Tensor, factor: float) -> None:
    work.mul_(factor).add_(other, alpha=1.0 - factor).clamp_(0, 255).floor_()


def brightness(work: torch.Tensor, factor: float) -> None:
    """In place on an 8-bit-valued float (3, H, W): torchvision's ``adjust_brightness`` then uint8."""
    work.mul_(factor).clamp_(0, 255).floor_()


def contrast(work: torch.Tensor, factor: float) -> None:
    """In place: blend with the mean of the truncated grey image (torchvision's ``adjust_contrast``)."""
    _blend_(work, _grey(work).mean(dim=(-3, -2, -1), keepdim=True), factor)


def saturation(work: torch.Tensor, factor: float) -> None:
    """In place: blend with the truncated grey image (torchvision's ``adjust_saturation``)."""
    _blend_(work, _grey(work), factor)


def hue(work: torch.Tensor, shift: float) -> None:
    """In place: rotate each pixel's HSV hue by ``shift`` of the colour circle, keeping value and saturation.

    A third of a turn is a roll of the channels (red -> green -> blue); what is left, within a sixth,
    is integer arithmetic: with c = max - min, six times the hue is (g - b), (b - r) + 2c or (r - g) + 4c
    when red, green or blue is the largest, and each channel is min + clamp(2c - d, 0, c), d the
    circular distance of the shifted hue from the channel's own (0, 2c, 4c), in sixteenths of a level.
    Channels are computed as one (3, H, W) tensor: fewer, larger operations.
    """
    turns = round(3 * shift)
    rest = shift - turns / 3
    rgb = work.to(torch.int16).roll(turns, 0) if turns else work.to(torch.int16)
    red, green, blue = rgb.unbind(0)
    top = torch.maximum(torch.maximum(red, green), blue)  # not aminmax: a reduction across planes is slower
    bottom = torch.minimum(torch.minimum(red, green), blue)
    chroma = top - bottom
    red_below = (top - red).clamp_(max=1)  # 0 where red is the largest channel, else 1
    green_below = (top - green).clamp_(max=1)
    six_hue = green - blue  # red largest: in [-c, c]
    green_part = (blue - red).add_(chroma, alpha=2)
    blue_part = (red - green).add_(chroma, alpha=4).sub_(green_part).mul_(green_below).add_(green_part)
    six_hue += blue_part.sub_(six_hue).mul_(red_below)
    six_hue <<= _HUE_BITS  # in [-c, 5c], plus the shift below: within [-2c, 6c]
    six_hue += chroma.to(torch.float32).mul_(6 * rest * (1 << _HUE_BITS)).round_().to(torch.int16)
    chroma <<= _HUE_BITS
    # Per channel at once: d = |6 hue - 2kc| (channel k's own hue), within [0, 6c]; the circular distance
    # is 3c - |d - 3c|, and the channel is min + clamp(2c - it, 0, c) = min + clamp(|d - 3c| - c, 0, c).
    corners = torch.tensor([0, 2, 4], dtype=torch.int16).view(3, *[1] * chroma.dim())  # red, green, blue
    level = torch.addcmul(six_hue, corners, chroma, value=-1).abs_().sub_(chroma, alpha=3).abs_().sub_(chroma)
    level = level.clamp_(min=torch.zeros((), dtype=level.dtype), max=chroma)
    level >>= _HUE_BITS  # truncated; min is whole, so adding it after truncating changes nothing
    work.copy_(level.add_(bottom))
