"""Colour overlays of label maps with a legend of the classes present: one prediction (``predict``),
or image / ground truth / prediction side by side (the sample predictions of a training run)."""

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


def displayable(image: torch.Tensor) -> torch.Tensor:
    """An 8-bit RGB view of an image: uint8 RGB as it is; otherwise its first three channels (a single
    one repeated), each stretched from its own minimum to maximum, as viewers of multispectral tiles show them."""
    if image.dtype == torch.uint8 and image.shape[0] == 3:
        return image
    bands = image[:3].float() if image.shape[0] >= 3 else image[:1].float().expand(3, -1, -1)
    low = bands.amin(dim=(1, 2), keepdim=True)
    high = bands.amax(dim=(1, 2), keepdim=True)
    return ((bands - low) / (high - low).clamp_min(1e-12) * 255).round().to(torch.uint8)


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


def _entries(labels: torch.Tensor, class_names: Sequence[str], palette: torch.Tensor,
             share: bool = True) -> list[tuple[str, tuple]]:
    """Legend rows of the classes in ``labels``, largest first, with their share of it when ``share``."""
    counts = torch.bincount(labels.flatten().cpu(), minlength=len(class_names))[: len(class_names)]
    present = [int(index) for index in torch.argsort(counts, descending=True, stable=True) if counts[index] > 0]
    return [(class_names[index] + (f" {100 * counts[index] / labels.numel():.1f}%" if share else ""),
             tuple(palette[index].tolist())) for index in present]


def _side_by_side(panels: Sequence[torch.Tensor], entries: Sequence[tuple[str, tuple]]) -> torch.Tensor:
    """uint8 (3, H, W) panels left to right, then the legend."""
    height, width = panels[0].shape[-2:]
    legend = _legend(entries or [("(no class)", (255, 255, 255))], height, max(_MIN_FONT_SIZE, min(height, width) // 32))
    canvas = Image.new("RGB", (width * len(panels) + legend.width, legend.height), "white")
    for index, panel in enumerate(panels):
        canvas.paste(TF.to_pil_image(panel), (index * width, 0))
    canvas.paste(legend, (width * len(panels), 0))
    return TF.pil_to_tensor(canvas)


def render_overlay(image: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str]) -> torch.Tensor:
    """The image blended with its (H, W) class map, and on its right a legend of the classes
    present, largest first, with their share of the image. Returns uint8 (3, H, W + legend)."""
    palette = class_palette(len(class_names))
    image, labels = displayable(image.cpu()), labels.cpu()
    return _side_by_side([blend(image, labels, palette)], _entries(labels, class_names, palette))


def render_comparison(image: torch.Tensor, truth: torch.Tensor, prediction: torch.Tensor,
                      class_names: Sequence[str], ignore_index: int = 255) -> torch.Tensor:
    """Image, ground truth and prediction side by side (uint8 (3, H, 3 W + legend)); ignored pixels of
    the ground truth show the bare image. The legend lists the classes of the prediction and the truth."""
    palette = class_palette(len(class_names))
    image, truth, prediction = displayable(image.cpu()), truth.cpu().long(), prediction.cpu().long()
    labelled = truth != ignore_index
    truth_panel = torch.where(labelled, blend(image, truth.where(labelled, 0), palette), image)
    both = torch.cat([prediction.flatten(), truth[labelled]])
    return _side_by_side([image, truth_panel, blend(image, prediction, palette)],
                         _entries(both, class_names, palette, share=False))
