"""The reference photometric distortion: each operation against its formula and against PIL, which
the reference pipeline ran (MosaicML's ADE20k loader applied torchvision's functions to PIL images)."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance

from torchvision.transforms.v2 import functional as F

from segrecipes.data import photometric
from segrecipes.data.photometric import PhotometricDistortion

IDENTITY = dict(brightness_delta=0, contrast_range=(1.0, 1.0), saturation_range=(1.0, 1.0), hue_delta=0)
# ITU-R 601 luma, as torchvision's rgb_to_grayscale and PIL's convert("L") weigh the channels
LUMA = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)


def _image(seed: int = 0, size: int = 8) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=generator)
    image[:, 0, :3] = torch.tensor([[0, 0, 0], [255, 255, 255], [90, 90, 90]]).T  # greys: no hue
    return image


def _bright_image() -> torch.Tensor:
    """A light scene with some saturated colour: the case where scaling and blending differ most."""
    generator = torch.Generator().manual_seed(5)
    image = torch.randint(150, 256, (3, 24, 24), dtype=torch.uint8, generator=generator)
    image[0, :8] = torch.randint(0, 60, (8, 24), generator=generator).to(torch.uint8)
    return image


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _outcomes(distortion: PhotometricDistortion, image: torch.Tensor, seeds: int = 40) -> list[torch.Tensor]:
    return [distortion(image, _seeded(seed)) for seed in range(seeds)]


def _pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray(image.permute(1, 2, 0).numpy())


def _from_pil(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)


def _applied(outcomes: list[torch.Tensor], image: torch.Tensor) -> list[torch.Tensor]:
    changed = [out for out in outcomes if not torch.equal(out, image)]
    assert 0 < len(changed) < len(outcomes)  # applied with p = 0.5 (and the rest left the image alone)
    return changed


def test_identity_parameters_leave_the_image_unchanged() -> None:
    distortion = PhotometricDistortion(**IDENTITY)
    for seed in range(20):
        image = _image(seed)
        assert torch.equal(distortion(image, _seeded(seed)), image)


def test_brightness_multiplies_by_one_factor_within_range() -> None:
    distortion = PhotometricDistortion(**{**IDENTITY, "brightness_delta": 32 / 255})
    image = torch.full((3, 4, 4), 200, dtype=torch.uint8)
    factors = [out.int().unique().item() / 200 for out in _outcomes(distortion, image, 60)]
    assert all(1 - 32 / 255 - 0.006 <= factor <= 1 + 32 / 255 + 0.006 for factor in factors)
    assert 15 < factors.count(1.0) < 45  # applied with p = 0.5
    assert len(set(factors)) > 10


def test_contrast_blends_with_the_grey_mean_like_the_reference() -> None:
    """Bug: contrast multiplied the pixels, which darkened a light image instead of flattening it."""
    image = _bright_image()
    distortion = PhotometricDistortion(**{**IDENTITY, "contrast_range": (0.5, 0.5)})
    for out in _applied(_outcomes(distortion, image), image):
        grey_mean = (image.float() * LUMA).sum(0).mean()
        formula = 0.5 * image.float() + 0.5 * grey_mean
        assert (out.float() - formula).abs().max() <= 2.0  # 8-bit truncation of the grey image and of the blend
        reference = _from_pil(ImageEnhance.Contrast(_pil(image)).enhance(0.5))  # what the reference computed
        assert (out.int() - reference.int()).abs().max() <= 1
        assert out.float().mean().item() == pytest.approx(reference.float().mean().item(), abs=0.6)
        assert out.float().mean() > 0.9 * image.float().mean()  # multiplying by 0.5 would have halved it


def test_saturation_blends_with_the_greyscale_image_like_the_reference() -> None:
    """Bug: saturation scaled the HSV saturation, which is not what the reference's blend does."""
    image = _bright_image()
    distortion = PhotometricDistortion(**{**IDENTITY, "saturation_range": (0.3, 0.3)})
    for out in _applied(_outcomes(distortion, image), image):
        grey = (image.float() * LUMA).sum(0, keepdim=True)
        formula = (0.3 * image.float() + 0.7 * grey).clamp(0, 255)
        assert (out.float() - formula).abs().max() <= 2.0  # 8-bit truncation of the grey image and of the blend
        reference = _from_pil(ImageEnhance.Color(_pil(image)).enhance(0.3))
        assert (out.int() - reference.int()).abs().max() <= 1


def test_saturation_above_one_pushes_colours_away_from_grey_and_clips() -> None:
    image = torch.tensor([200, 100, 50], dtype=torch.uint8).view(3, 1, 1)
    distortion = PhotometricDistortion(**{**IDENTITY, "saturation_range": (1.5, 1.5)})
    grey = 0.299 * 200 + 0.587 * 100 + 0.114 * 50
    expected = [min(255.0, max(0.0, 1.5 * value - 0.5 * grey)) for value in (200, 100, 50)]
    for out in _applied(_outcomes(distortion, image), image):
        assert out.flatten().tolist() == pytest.approx(expected, abs=2.0)


def test_hue_shift_is_within_delta_of_the_colour_circle() -> None:
    distortion = PhotometricDistortion(**{**IDENTITY, "hue_delta": 18 / 255})
    image = torch.tensor([255, 0, 0], dtype=torch.uint8).view(3, 1, 1)  # pure red, hue 0
    shifts = []
    for out in _outcomes(distortion, image, 60):
        red, green, blue = (out.flatten() / 255).tolist()
        hue = colorsys.rgb_to_hsv(red, green, blue)[0]
        shifts.append((hue + 0.5) % 1.0 - 0.5)  # signed fraction of the colour circle
    assert all(abs(shift) <= 18 / 255 + 0.005 for shift in shifts)  # up to 8-bit rounding of the output
    assert 15 < sum(shift == 0 for shift in shifts) < 45  # applied with p = 0.5
    assert min(shifts) < -0.03 and max(shifts) > 0.03


def test_contrast_comes_first_or_last_never_twice() -> None:
    """The reference draws the contrast position once: before saturation and hue, or after them."""
    distortion = PhotometricDistortion(**{**IDENTITY, "contrast_range": (0.0, 0.0)})  # factor 0: the grey mean
    image = _bright_image()
    for out in _outcomes(distortion, image):
        assert torch.equal(out, image) or out.unique().numel() == 1


def _random_images(count: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    sizes = torch.randint(1, 70, (count, 2), generator=generator).tolist()
    return [torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
            for height, width in sizes]


def _applied_to_float(step, image: torch.Tensor, factor: float) -> torch.Tensor:
    return step(image.to(torch.float32), factor).to(torch.uint8)


@pytest.mark.parametrize("name", ["brightness", "contrast", "saturation"])
def test_blends_are_bit_exact_to_torchvision_on_uint8(name: str) -> None:
    """The in-place float chain does torchvision's float32 operations in its order, truncating as its uint8
    round trip did: equal to the pixel, on odd sizes too (the vectorized loops' tails)."""
    reference = {"brightness": F.adjust_brightness, "contrast": F.adjust_contrast,
                 "saturation": F.adjust_saturation}[name]
    generator = torch.Generator().manual_seed(1)
    for image in _random_images(25):
        factor = 1.5 * float(torch.rand((), generator=generator))
        assert torch.equal(_applied_to_float(getattr(photometric, name), image, factor), reference(image, factor))


def test_hue_is_within_one_level_of_torchvision_for_any_shift() -> None:
    shifts = [-0.5, -0.4, -1 / 3, -0.2, -0.07, -0.01, 0.0, 0.03, 18 / 255, 1 / 6, 0.25, 0.45, 0.5]
    differing = total = 0
    for image, shift in zip(_random_images(len(shifts), seed=2), shifts):
        difference = (_applied_to_float(photometric.hue, image, shift).int() - F.adjust_hue(image, shift).int()).abs()
        assert difference.max() <= 1, shift  # both truncate; ours rounds the shift to 1/16 of a level first
        differing, total = differing + int((difference > 0).sum()), total + difference.numel()
    assert differing < 0.2 * total  # about one value in eight is one level off


def test_hue_rotates_primaries_around_the_colour_circle() -> None:
    """Hand-computed: a sixth of a turn takes red to yellow, a third to green, half to cyan; greys stay."""
    pixels = torch.tensor([[255, 0, 0], [200, 200, 200], [0, 0, 255]], dtype=torch.uint8).T.reshape(3, 1, 3)
    expected = {1 / 6: [[255, 255, 0], [200, 200, 200], [255, 0, 255]],
                1 / 3: [[0, 255, 0], [200, 200, 200], [255, 0, 0]],
                0.5: [[0, 255, 255], [200, 200, 200], [255, 255, 0]],
                -1 / 6: [[255, 0, 255], [200, 200, 200], [0, 255, 255]]}
    for shift, colours in expected.items():
        out = _applied_to_float(photometric.hue, pixels, shift)
        assert out.reshape(3, 3).T.tolist() == colours, shift


@pytest.mark.parametrize("name", ["brightness", "contrast", "saturation", "hue"])
def test_each_step_takes_a_decoded_image_as_it_is_laid_out(name: str) -> None:
    """A decoded image is (H, W, 3) in memory, seen as (3, H, W): each step gives what it gives for the same
    values laid out by plane, from uint8 or float, and leaves a uint8 input alone."""
    step = getattr(photometric, name)
    planar = torch.randint(0, 256, (3, 37, 53), dtype=torch.uint8, generator=_seeded(3))
    decoded = planar.permute(1, 2, 0).contiguous().permute(2, 0, 1)
    factor = 0.05 if name == "hue" else 1.3
    expected = step(planar.to(torch.float32), factor).to(torch.uint8)
    before = decoded.clone()
    for work in (decoded, decoded.to(torch.float32)):
        assert torch.equal(step(work, factor).to(torch.uint8), expected)
    assert torch.equal(decoded, before)


def test_the_hue_shift_in_int16_is_within_a_sixteenth_and_a_half_of_a_level() -> None:
    """Against the exact product chroma x shift (in sixteenths of a level), for every chroma and many shifts."""
    chroma = torch.arange(256, dtype=torch.int16)
    for sixteenths in torch.linspace(-16, 16, 97).tolist() + [0.3, -0.3, 15.99]:
        six_hue = torch.zeros_like(chroma)
        photometric._add_shift_(six_hue, chroma, sixteenths)
        exact = chroma.double() * sixteenths
        assert (six_hue.double() - exact).abs().max() <= 1.5, sixteenths
