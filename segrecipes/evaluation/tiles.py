"""Tiled inference for images too large for one forward pass (aerial scenes, slides, panoramas).

Tiles of ``tile`` pixels every ``round(tile * (1 - overlap))`` pixels cover the image, the last one flush
with the border (the sliding-window grid; a side shorter than a tile is one tile of that side's length).
Each tile is predicted at the image's own resolution, with test-time augmentation as configured
(:func:`predict_probs` on the tile), and its log-probabilities -- logits up to a per-pixel constant, which
softmax ignores -- are weighted by a smooth window (a squared sine, highest at the tile's centre, small but
never zero at its border), summed, and divided by the summed weights. So seams get no hard edges, and where one
tile covers the whole image the result is whole-image inference.

Tiles are visited one row of tiles at a time and finished rows of the output are handed on as soon as no later
tile reaches them: memory holds the input and the weighted sums of one band of tile rows (one tile high, the
image wide), never the whole image's logits, whatever the image height.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import nn

from segrecipes.evaluation.inference import predict_probs
from segrecipes.evaluation.options import InferenceConfigError, InferenceOptions

RowReader = Callable[[int, int], torch.Tensor]  # (first row, row count) -> normalized (1, C, rows, width)
_LOG_FLOOR = 1e-12  # probabilities are floored before the log: a float32 softmax underflows to 0


def tile_starts(length: int, tile: int, step: int) -> list[int]:
    """Where the tiles along a side of ``length`` start: every ``step`` pixels, the last flush with the end."""
    if length <= tile:
        return [0]
    count = math.ceil((length - tile) / step) + 1
    return [min(index * step, length - tile) for index in range(count)]


def blend_window(height: int, width: int) -> torch.Tensor:
    """The (height, width) weights of one tile: the outer product of squared sines over each side."""

    def side(length: int) -> torch.Tensor:
        return torch.sin(math.pi * (torch.arange(length, dtype=torch.float64) + 0.5) / length).square()

    return torch.outer(side(height), side(width)).clamp_min(1e-6).float()


def check_tiling(tile: int, overlap: float) -> int:
    """The step between tiles; a bad ``tile`` or ``overlap`` raises :class:`InferenceConfigError`."""
    if tile < 1:
        raise InferenceConfigError(f"--tile {tile}: must be a positive number of pixels")
    if not 0 <= overlap < 1:
        raise InferenceConfigError(f"--overlap {overlap}: must be at least 0 and below 1 (a fraction of the tile)")
    return max(1, round(tile * (1 - overlap)))


def tiled_rows(
    model: nn.Module, read_rows: RowReader, height: int, width: int, options: InferenceOptions, *,
    tile: int, overlap: float, num_classes: int | None = None, amp_dtype: torch.dtype | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """``(first row, scores (C, rows, width))`` of consecutive bands that cover the image top to bottom: the
    window-weighted mean of the tiles' log-probabilities, whose softmax is the probabilities and whose argmax
    the classes (a caller that wants only classes needs no softmax over a band).

    ``read_rows(top, count)`` gives the normalized input rows ``top:top + count`` (all columns) as
    (1, C, count, width) on the device to run on; it is called once per row of tiles.
    """
    step = check_tiling(tile, overlap)
    tile_h, tile_w = min(tile, height), min(tile, width)
    row_starts, col_starts = tile_starts(height, tile_h, step), tile_starts(width, tile_w, step)
    band_top, sums, weights = 0, None, None  # sums (C, rows, width) and weights (rows, width) from band_top on
    window = blend_window(tile_h, tile_w)  # one tile's weights, the same for every tile
    for index, top in enumerate(row_starts):
        rows = read_rows(top, tile_h)
        window = window.to(rows.device)
        needed = top + tile_h - band_top  # the band must reach this tile row's bottom
        for left in col_starts:
            probs = predict_probs(model, rows[:, :, :, left:left + tile_w], (tile_h, tile_w), options,
                                  num_classes=num_classes, amp_dtype=amp_dtype)[0]
            if sums is None:
                sums = probs.new_zeros(probs.shape[0], needed, width)
                weights = probs.new_zeros(needed, width)
            elif sums.shape[1] < needed:
                grow = needed - sums.shape[1]
                sums = torch.cat([sums, sums.new_zeros(sums.shape[0], grow, width)], dim=1)
                weights = torch.cat([weights, weights.new_zeros(grow, width)], dim=0)
            rows_here = slice(top - band_top, top - band_top + tile_h)
            sums[:, rows_here, left:left + tile_w] += probs.clamp_min(_LOG_FLOOR).log() * window
            weights[rows_here, left:left + tile_w] += window
            del probs
        done = (row_starts[index + 1] if index + 1 < len(row_starts) else height) - band_top
        yield band_top, sums[:, :done].div_(weights[:done])  # in place: these rows are handed on, then dropped
        sums, weights, band_top = sums[:, done:], weights[done:], band_top + done


def memory_rows(images: torch.Tensor) -> RowReader:
    """The rows reader of a normalized image (1, C, H, W) already in memory."""
    return lambda top, count: images[:, :, top:top + count]


def tiled_probs(
    model: nn.Module, images: torch.Tensor, options: InferenceOptions, *, tile: int, overlap: float,
    num_classes: int | None = None, amp_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Probabilities (1, C, H, W) of one normalized image (1, C, H, W) held in memory, by :func:`tiled_rows`."""
    if images.shape[0] != 1:
        raise InferenceConfigError(f"tiled inference takes one image at a time, got a batch of {images.shape[0]}")
    height, width = images.shape[-2:]
    bands = tiled_rows(model, memory_rows(images), height, width, options, tile=tile,
                       overlap=overlap, num_classes=num_classes, amp_dtype=amp_dtype)
    return torch.cat([scores.softmax(dim=0) for _, scores in bands], dim=1)[None]
