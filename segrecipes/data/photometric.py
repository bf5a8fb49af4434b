"""The reference photometric distortion (SPEC §2) on a uint8 image tensor, at a fraction of its cost.

The reference (MosaicML's ADE20k loader, modelled on mmseg's ``PhotoMetricDistortion``) applies
torchvision's colour functions, each with p = 0.5: brightness times U(1 - 32/255, 1 + 32/255);
contrast first or last at random, U(0.5, 1.5), blending with the image's grey mean; saturation
U(0.5, 1.5), blending with the greyscale image; hue rotated by U(-18/255, 18/255) of the colour
circle; each step rounds back to 8 bits.

Brightness, contrast and saturation are torchvision's formulas with the same float32 operations in the
same order, on one float copy of the image that each step truncates in place (what the round trip to
uint8 did), so they are bit-exact without a uint8 and a float temporary per step; a factor within
[0, 1] cannot leave [0, 255], so it skips the clamp. The hue rotation is integer arithmetic on the
hexagonal hue of each pixel (max and min are kept, the middle channel moves): no float HSV image, no
``torch.where``; it is within one level of torchvision's ``adjust_hue``, and the int16 image it makes
goes straight to uint8 when it is the last step. The copy has contiguous (H, W) planes, and the
operations go plane by plane: a decoded image is laid out (H, W, 3), and operations on its strided
planes are several times slower, while a contiguous plane stays in the core's cache between them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

# ITU-R 601 luma weights, in the order and precision of torchvision's rgb_to_grayscale
_LUMA = (0.2989, 0.587, 0.114)
# Hue in sixteenths of a level: the shift is rounded to 1/16 of a level before the output is truncated.
# Every intermediate stays within int16: |six times the hue| <= 6c after the shift, 16 * 6 * 255 < 2**15.
_HUE_BITS = 4
# The hue shift's fraction of a sixteenth in 128ths: 255 * 128 < 2**15.
_FRACTION_BITS = 7


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
        work = image  # one sample in sixteen draws no step: no copy at all
        for step, factor in self.draw(generator):
            work = step(work, factor)
        return work.to(torch.uint8)

    def draw(self, generator: torch.Generator) -> list[tuple[Callable[[torch.Tensor, float], torch.Tensor], float]]:
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


def _float(work: torch.Tensor) -> torch.Tensor:
    """``work`` to change in place: itself if it is a contiguous float32 (3, H, W), else a float32 copy that
    is (a decoded image is laid out (H, W, 3): its planes would be strided, each operation on them slow)."""
    return work.to(torch.float32, memory_format=torch.contiguous_format)


def _grey(work: torch.Tensor) -> torch.Tensor:
    """The truncated luma (H, W) of an 8-bit-valued float image (torchvision's for a uint8 image)."""
    red, green, blue = work.unbind(0)
    return red.mul(_LUMA[0]).add_(green, alpha=_LUMA[1]).add_(blue, alpha=_LUMA[2]).floor_()


def _scale_(work: torch.Tensor, factor: float, other: torch.Tensor | None = None) -> torch.Tensor:
    """``factor * work + (1 - factor) * other``, clamped to [0, 255] and truncated, plane by plane (a float
    plane stays in the core's cache for the next operation). A factor in [0, 1] keeps values within
    [0, 255] by itself (a rounding above 255 is truncated back to it), so there is no clamp to do."""
    clamp = not 0 <= factor <= 1
    for plane in work.unbind(0):
        plane.mul_(factor)
        if other is not None:
            plane.add_(other, alpha=1.0 - factor)
        if clamp:
            plane.clamp_(0, 255)
        plane.floor_()
    return work


def brightness(work: torch.Tensor, factor: float) -> torch.Tensor:
    """torchvision's ``adjust_brightness`` then uint8, on an 8-bit-valued (3, H, W) image (in place if float32)."""
    return _scale_(_float(work), factor)


def contrast(work: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend with the mean of the truncated grey image (torchvision's ``adjust_contrast``), as :func:`brightness`."""
    work = _float(work)
    return _scale_(work, factor, _grey(work).mean())


def saturation(work: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend with the truncated grey image (torchvision's ``adjust_saturation``), as :func:`brightness`."""
    work = _float(work)
    return _scale_(work, factor, _grey(work))


def hue(work: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate each pixel's HSV hue by ``shift`` of the colour circle, keeping value and saturation: a new
    int16 image (of 8-bit values) from an 8-bit-valued one of any dtype.

    A third of a turn is a roll of the channels (red -> green -> blue); what is left, within a sixth,
    is integer arithmetic: with c = max - min, six times the hue is (g - b), (b - r) + 2c or (r - g) + 4c
    when red, green or blue is the largest, and each channel is min + clamp(2c - d, 0, c), d the
    circular distance of the shifted hue from the channel's own (0, 2c, 4c), in sixteenths of a level.
    Every operation is on whole contiguous (H, W) int16 planes, in place where it can be.
    """
    turns = round(3 * shift)
    rest = shift - turns / 3
    rgb = work.to(torch.int16, memory_format=torch.contiguous_format, copy=True)  # planes contiguous
    if turns:
        rgb = rgb.roll(turns, 0)
    red, green, blue = rgb.unbind(0)
    top = torch.maximum(red, green)
    torch.maximum(top, blue, out=top)  # not aminmax: a reduction across planes is slower
    bottom = torch.minimum(red, green)
    torch.minimum(bottom, blue, out=bottom)
    chroma = top - bottom
    red_below = (top - red).clamp_(max=1)  # 0 where red is the largest channel, else 1
    green_below = top.sub_(green).clamp_(max=1)
    six_hue = green - blue  # red largest: in [-c, c]
    green_part = (blue - red).add_(chroma, alpha=2)
    blue_part = (red - green).add_(chroma, alpha=4).sub_(green_part).mul_(green_below).add_(green_part)
    six_hue += blue_part.sub_(six_hue).mul_(red_below)
    six_hue <<= _HUE_BITS  # in [-c, 5c], plus the shift below: within [-2c, 6c]
    _add_shift_(six_hue, chroma, 6 * rest * (1 << _HUE_BITS))
    chroma <<= _HUE_BITS
    zero = torch.zeros((), dtype=torch.int16)
    # Channel k (its own hue at 2kc): d = |6 hue - 2kc|, within [0, 6c]; the circular distance is
    # 3c - |d - 3c|, and the channel is min + clamp(2c - it, 0, c) = min + clamp(|d - 3c| - c, 0, c).
    # The input planes are spent by now: each output channel is computed in its place.
    for corner, channel in enumerate(rgb.unbind(0)):
        torch.sub(six_hue, chroma, alpha=2 * corner, out=channel)
        channel.abs_().sub_(chroma, alpha=3).abs_().sub_(chroma).clamp_(min=zero, max=chroma)
        channel >>= _HUE_BITS  # truncated; min is whole, so adding it after truncating changes nothing
        channel += bottom
    return rgb


def _add_shift_(six_hue: torch.Tensor, chroma: torch.Tensor, sixteenths: float) -> None:
    """``six_hue += chroma * sixteenths`` rounded, in int16 (no float plane, no conversions): ``sixteenths``
    is whole + fraction, the fraction in 128ths so that ``chroma * 128ths <= 255 * 128`` fits; the shift
    added is within 1.5 sixteenths of a level of the exact one."""
    whole = math.floor(sixteenths)
    fraction = round((sixteenths - whole) * (1 << _FRACTION_BITS))
    if whole:
        six_hue.add_(chroma, alpha=whole)
    if fraction:
        part = chroma * fraction
        part += 1 << (_FRACTION_BITS - 1)
        part >>= _FRACTION_BITS
        six_hue += part
