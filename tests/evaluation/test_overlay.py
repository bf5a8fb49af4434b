"""The class palette, the blend and the legend against hand-computed values."""

from __future__ import annotations

import torch

from segrecipes.deploy import class_palette, render_overlay
from segrecipes.evaluation.overlay import blend


def test_deploy_palette_is_the_voc_colour_map_shifted_by_one() -> None:
    palette = class_palette(255)
    # VOC colours of indices 1, 2, 3, 7, 8, 9: bit 3j + c of the index is bit 7 - j of channel c
    expected = {0: (128, 0, 0), 1: (0, 128, 0), 2: (128, 128, 0), 6: (128, 128, 128), 7: (64, 0, 0), 8: (192, 0, 0)}
    for index, color in expected.items():
        assert tuple(palette[index].tolist()) == color
    assert palette.dtype == torch.uint8
    assert len({tuple(row) for row in palette.tolist()}) == 255  # every class its own colour
    assert torch.equal(class_palette(11), palette[:11])  # a class keeps its colour whatever the class count


def test_deploy_blend_mixes_half_image_half_class_colour() -> None:
    image = torch.tensor([[[100, 10]], [[50, 20]], [[200, 30]]], dtype=torch.uint8)  # (3, 1, 2)
    labels = torch.tensor([[1, 7]])
    mixed = blend(image, labels, class_palette(8))
    # pixel 0: (100, 50, 200) with (0, 128, 0); pixel 1: (10, 20, 30) with (64, 0, 0)
    assert mixed[:, 0, 0].tolist() == [50, 89, 100]
    assert mixed[:, 0, 1].tolist() == [37, 10, 15]


def _rows_with(color: tuple[int, int, int], region: torch.Tensor) -> torch.Tensor:
    return (region == torch.tensor(color, dtype=torch.uint8).view(3, 1, 1)).all(dim=0).any(dim=1).nonzero().flatten()


def test_deploy_overlay_has_image_blend_and_legend_of_present_classes_largest_first() -> None:
    height, width = 60, 80
    image = torch.full((3, height, width), 200, dtype=torch.uint8)
    labels = torch.full((height, width), 3)  # class 3 covers most of the image
    labels[:, :10] = 8  # class 8 a strip; classes 0-2 and 4-7 absent
    names = [f"class{index}" for index in range(9)]
    overlay = render_overlay(image, labels, names)
    assert overlay.dtype == torch.uint8 and overlay.shape[0] == 3
    assert overlay.shape[1] >= height and overlay.shape[2] > width
    assert torch.equal(overlay[:, :height, :width], blend(image, labels, class_palette(9)))

    legend = overlay[:, :, width:]
    palette = class_palette(9)
    swatch_rows = {index: _rows_with(tuple(palette[index].tolist()), legend) for index in range(9)}
    assert len(swatch_rows[3]) > 0 and len(swatch_rows[8]) > 0
    assert swatch_rows[3].max() < swatch_rows[8].min()  # the larger class is listed first
    for absent in (0, 1, 2, 4, 5, 7):  # 6 is grey (128, 128, 128), which anti-aliased text may also produce
        assert len(swatch_rows[absent]) == 0
