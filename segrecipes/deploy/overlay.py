"""Colour overlays of predicted label maps, with a legend of the classes present."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image, ImageDraw, ImageFont
from torchvision.transforms.v2 import functional as TF

OVERLAY_ALPHA = 0.5
_MIN_FONT_SIZE = 12


def class_palette(num_classes: int) -> torch.Tensor:
    """(num_classes, 3) uint8 colours: the PASCAL VOC colour map shifted by one, so that class 0
    (a real class here, not "background") is not black. Bit ``3 * j + c`` of ``index + 1`` becomes
    bit ``7 - j`` of channel ``c``: a class keeps its colour across images and runs, and colours
    are distinct for up to 2^24 - 1 classes."""
    codes = torch.arange(1, num_classes + 1)
    palette = torch.zeros(num_classes, 3, dtype=torch.int64)
    for bit in range(8):
        for channel in range(3):
            palette[:, channel] |= ((codes >> (3 * bit + channel)) & 1) << (7 - bit)
    return palette.to(torch.uint8)


def blend(
    image: torch.Tensor, labels: torch.Tensor, palette: torch.Tensor, alpha: float = OVERLAY_ALPHA
) -> torch.Tensor:
    """uint8 (3, H, W) image mixed with the colour of each pixel's class, ``alpha`` of the colour."""
    colors = palette.to(labels.device)[labels].permute(2, 0, 1).float()
    return (image.float() * (1 - alpha) + colors * alpha).round().to(torch.uint8)


def _legend(entries: Sequence[tuple[str, tuple[int, int, int]]], min_height: int, font_size: int) -> Image.Image:
    """A white panel with one row per entry: a colour swatch and its text."""
    font = ImageFont.load_default(size=font_size)
    margin, row = font_size // 2, font_size * 3 // 2
    width = 3 * margin + font_size + max(int(font.getlength(text)) + 1 for text, _ in entries)
    panel = Image.new("RGB", (width, max(min_height, 2 * margin + row * len(entries))), "white")
    draw = ImageDraw.Draw(panel)
    for index, (text, color) in enumerate(entries):
        top = margin + index * row
        draw.rectangle((margin, top, margin + font_size - 1, top + font_size - 1), fill=color)
        draw.text((2 * margin + font_size, top), text, fill="black", font=font)
    return panel


def render_overlay(image: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str]) -> torch.Tensor:
    """The image blended with its (H, W) class map, and on its right a legend of the classes
    present, largest first, with their share of the image. Returns uint8 (3, H, W + legend)."""
    palette = class_palette(len(class_names))
    counts = torch.bincount(labels.flatten().cpu(), minlength=len(class_names))
    present = [int(index) for index in torch.argsort(counts, descending=True, stable=True) if counts[index] > 0]
    entries = [
        (f"{class_names[index]} {100 * counts[index] / labels.numel():.1f}%", tuple(palette[index].tolist()))
        for index in present
    ]
    height, width = labels.shape
    legend = _legend(entries, height, max(_MIN_FONT_SIZE, min(height, width) // 32))
    canvas = Image.new("RGB", (width + legend.width, legend.height), "white")
    canvas.paste(TF.to_pil_image(blend(image.cpu(), labels.cpu(), palette)), (0, 0))
    canvas.paste(legend, (width, 0))
    return TF.pil_to_tensor(canvas)
