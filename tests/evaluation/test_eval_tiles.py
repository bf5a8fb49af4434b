"""Tiled inference: the grid and window by hand, whole-image equality where one tile covers the image, and
differences confined to the seams for a network whose receptive field is known."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from segrecipes.evaluation.inference import predict_probs
from segrecipes.evaluation.options import InferenceConfigError, InferenceOptions
from segrecipes.evaluation.tiles import blend_window, memory_rows, tile_starts, tiled_probs, tiled_rows

RADIUS = 2  # two 3x3 convolutions: each output pixel sees 2 pixels around it


def _local_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1)).eval()


def _image(height: int, width: int) -> torch.Tensor:
    return torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(height * width))


def test_tile_starts_by_hand() -> None:
    assert tile_starts(100, 40, 30) == [0, 30, 60]  # the last one flush with the end
    assert tile_starts(100, 40, 25) == [0, 25, 50, 60]
    assert tile_starts(30, 40, 30) == [0]  # a side shorter than a tile: one tile
    assert tile_starts(40, 40, 10) == [0]


def test_blend_window_is_a_product_of_squared_sines() -> None:
    window = blend_window(4, 2)
    side4 = [math.sin(math.pi * (i + 0.5) / 4) ** 2 for i in range(4)]  # 0.146, 0.854, 0.854, 0.146
    side2 = [math.sin(math.pi * (i + 0.5) / 2) ** 2 for i in range(2)]  # 0.5, 0.5
    expected = torch.tensor([[a * b for b in side2] for a in side4])
    torch.testing.assert_close(window, expected)
    assert window.min() > 0


@pytest.mark.parametrize("tta", ["none", "flip", "ms-flip"])
def test_one_tile_covering_the_image_is_whole_image_inference(tta: str) -> None:
    model, images = _local_net(), _image(37, 50)
    options = InferenceOptions(tta=tta, scales=(0.75, 1.0))
    with torch.inference_mode():
        whole = predict_probs(model, images, (37, 50), options)
        tiled = tiled_probs(model, images, options, tile=64, overlap=0.25)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-6)


def _seams(height: int, width: int, tile: int, step: int) -> torch.Tensor:
    """Pixels within RADIUS of a tile border that is not the image border: there a tile's zero padding
    differs from the real neighbours, everywhere else every tile sees what the whole image sees."""
    near = torch.zeros(height, width, dtype=torch.bool)
    for top in tile_starts(height, tile, step):
        for left in tile_starts(width, tile, step):
            inner = torch.zeros(height, width, dtype=torch.bool)
            inner[top:top + tile, left:left + tile] = True
            core = inner.clone()
            if top > 0:
                core[top:top + RADIUS] = False
            if top + tile < height:
                core[top + tile - RADIUS:top + tile] = False
            if left > 0:
                core[:, left:left + RADIUS] = False
            if left + tile < width:
                core[:, left + tile - RADIUS:left + tile] = False
            near |= inner & ~core
    return near


def test_several_tiles_differ_from_whole_image_only_at_the_seams() -> None:
    model, images = _local_net(), _image(70, 90)
    options = InferenceOptions()
    with torch.inference_mode():
        whole = predict_probs(model, images, (70, 90), options)
        tiled = tiled_probs(model, images, options, tile=32, overlap=0.5)
    difference = (tiled - whole).abs().amax(dim=1)[0]
    seams = _seams(70, 90, 32, 16)
    assert difference[~seams].max() <= 1e-5  # away from seams: the same numbers
    assert difference[seams].max() > 1e-3  # at seams the tiles really differ (the test can see a difference)
    # and there the smooth window keeps it small: each seam pixel also lies deep inside another tile
    assert difference[seams].mean() < 0.05


def test_rows_come_out_in_order_and_reads_are_one_band_of_tiles() -> None:
    model, images = _local_net(), _image(100, 40)
    reads: list[tuple[int, int]] = []
    rows = memory_rows(images)

    def read(top: int, count: int) -> torch.Tensor:
        reads.append((top, count))
        return rows(top, count)

    with torch.inference_mode():
        bands = list(tiled_rows(model, read, 100, 40, InferenceOptions(), tile=40, overlap=0.25))
    assert reads == [(0, 40), (30, 40), (60, 40)]  # never more than one tile's height at a time
    assert [top for top, _ in bands] == [0, 30, 60] and sum(probs.shape[1] for _, probs in bands) == 100


@pytest.mark.parametrize(("tile", "overlap", "message"), [
    (0, 0.25, "--tile 0: must be a positive number of pixels"),
    (32, 1.0, "--overlap 1.0: must be at least 0 and below 1"),
    (32, -0.1, "--overlap -0.1: must be at least 0 and below 1"),
])
def test_bad_tiling_is_refused(tile: int, overlap: float, message: str) -> None:
    with pytest.raises(InferenceConfigError, match=message):
        tiled_probs(_local_net(), _image(8, 8), InferenceOptions(), tile=tile, overlap=overlap)
