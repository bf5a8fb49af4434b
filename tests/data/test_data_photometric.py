"""The reference photometric distortion: HSV conversions against colorsys, each operation against its formula."""

from __future__ import annotations

import colorsys

import pytest
import torch

from segrecipes.data.photometric import PhotometricDistortion, hsv_to_rgb, rgb_to_hsv

IDENTITY = dict(brightness_delta=0, contrast_range=(1.0, 1.0), saturation_range=(1.0, 1.0), hue_delta=0)


def _image(seed: int = 0, size: int = 8) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=generator)
    image[:, 0, :3] = torch.tensor([[0, 0, 0], [255, 255, 255], [90, 90, 90]]).T  # greys: no hue
    return image


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_rgb_to_hsv_matches_colorsys() -> None:
    image = _image().float()
    hsv = rgb_to_hsv(image)
    for y in range(image.shape[1]):
        for x in range(image.shape[2]):
            expected = colorsys.rgb_to_hsv(*(image[:, y, x] / 255).tolist())
            assert hsv[0, y, x].item() == pytest.approx(expected[0], abs=1e-5)
            assert hsv[1, y, x].item() == pytest.approx(expected[1], abs=1e-5)
            assert hsv[2, y, x].item() / 255 == pytest.approx(expected[2], abs=1e-5)


def test_hsv_to_rgb_matches_colorsys() -> None:
    generator = torch.Generator().manual_seed(1)
    hsv = torch.rand(3, 6, 6, generator=generator)
    hsv[2] *= 255
    rgb = hsv_to_rgb(hsv)
    for y in range(6):
        for x in range(6):
            hue, saturation, value = hsv[:, y, x].tolist()
            expected = colorsys.hsv_to_rgb(hue, saturation, value / 255)
            assert (rgb[:, y, x] / 255).tolist() == pytest.approx(list(expected), abs=1e-5)


def test_identity_parameters_leave_the_image_unchanged() -> None:
    distortion = PhotometricDistortion(**IDENTITY)
    for seed in range(20):
        image = _image(seed)
        assert torch.equal(distortion(image, _seeded(seed)), image)


def test_brightness_multiplies_by_one_factor_within_range() -> None:
    distortion = PhotometricDistortion(**{**IDENTITY, "brightness_delta": 32 / 255})
    image = torch.full((3, 4, 4), 200, dtype=torch.uint8)
    factors = [distortion(image, _seeded(seed)).int().unique().item() / 200 for seed in range(60)]
    assert all(1 - 32 / 255 - 0.003 <= factor <= 1 + 32 / 255 + 0.003 for factor in factors)
    unchanged = factors.count(1.0)
    assert 15 < unchanged < 45  # applied with p = 0.5
    assert len(set(factors)) > 10


def test_contrast_multiplies_and_clips() -> None:
    distortion = PhotometricDistortion(**{**IDENTITY, "contrast_range": (2.0, 2.0)})
    image = _image(3)
    doubled = (image.int() * 2).clamp(0, 255).to(torch.uint8)
    outcomes = [distortion(image, _seeded(seed)) for seed in range(40)]
    assert all(torch.equal(out, image) or torch.equal(out, doubled) for out in outcomes)
    assert any(torch.equal(out, doubled) for out in outcomes)


def test_saturation_scales_hsv_saturation_and_keeps_hue_and_value() -> None:
    distortion = PhotometricDistortion(**{**IDENTITY, "saturation_range": (0.5, 0.5)})
    image = torch.tensor([200, 100, 50], dtype=torch.uint8).view(3, 1, 1)
    hue, saturation, value = colorsys.rgb_to_hsv(200 / 255, 100 / 255, 50 / 255)
    expected = [round(255 * c) for c in colorsys.hsv_to_rgb(hue, saturation * 0.5, value)]
    outcomes = {tuple(distortion(image, _seeded(seed)).flatten().tolist()) for seed in range(20)}
    assert outcomes == {(200, 100, 50), tuple(expected)}


def test_hue_shift_is_within_delta_of_the_colour_circle() -> None:
    distortion = PhotometricDistortion(**{**IDENTITY, "hue_delta": 18 / 255})
    image = torch.tensor([255, 0, 0], dtype=torch.uint8).view(3, 1, 1)  # pure red, hue 0
    shifts = []
    for seed in range(60):
        red, green, blue = (distortion(image, _seeded(seed)).flatten() / 255).tolist()
        hue = colorsys.rgb_to_hsv(red, green, blue)[0]
        shifts.append((hue + 0.5) % 1.0 - 0.5)  # signed fraction of the colour circle
    assert all(abs(shift) <= 18 / 255 + 0.005 for shift in shifts)  # up to 8-bit rounding of the output
    assert 15 < sum(shift == 0 for shift in shifts) < 45  # applied with p = 0.5
    assert min(shifts) < -0.03 and max(shifts) > 0.03
