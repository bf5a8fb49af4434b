"""Whole-image and sliding-window inference, and test-time augmentation (SPEC §3).

Follows the mmsegmentation conventions the public model zoos are scored with: sliding windows
whose overlapping logits are averaged, the last window flush with the border; multi-scale + flip
views whose logits are resized to the output size, turned into probabilities there and averaged.
"""

from __future__ import annotations

import contextlib
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segrecipes.evaluation.options import InferenceConfigError, InferenceMode, InferenceOptions


def _forward(model: nn.Module, images: torch.Tensor, num_classes: int | None) -> torch.Tensor:
    """Logits at the input size, in float32 (models that predict at a lower stride are resized)."""
    logits = model(images).float()
    if num_classes is not None and logits.shape[1] != num_classes:
        raise InferenceConfigError(f"the model predicts {logits.shape[1]} classes, the data has {num_classes}")
    if logits.shape[-2:] != images.shape[-2:]:
        logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
    return logits


def _slide(
    model: nn.Module, images: torch.Tensor, crop_size: tuple[int, int], stride: tuple[int, int], num_classes: int | None
) -> torch.Tensor:
    batch, _, height, width = images.shape
    crop_h, crop_w = crop_size
    stride_h, stride_w = stride
    # mmseg's grid: the last window is flush with the border, and a side shorter than the window is
    # covered by one window of that side's length (no padding, which would change the logits).
    rows = (max(height - crop_h, 0) + stride_h - 1) // stride_h + 1
    cols = (max(width - crop_w, 0) + stride_w - 1) // stride_w + 1
    logit_sum: torch.Tensor | None = None  # allocated once the first window tells the class count
    count = images.new_zeros(1, 1, height, width, dtype=torch.float32)
    for row in range(rows):
        for col in range(cols):
            bottom = min(row * stride_h + crop_h, height)
            right = min(col * stride_w + crop_w, width)
            top, left = max(bottom - crop_h, 0), max(right - crop_w, 0)
            logits = _forward(model, images[:, :, top:bottom, left:right], num_classes)
            if logit_sum is None:
                logit_sum = logits.new_zeros(batch, logits.shape[1], height, width)
            logit_sum[:, :, top:bottom, left:right] += logits
            count[:, :, top:bottom, left:right] += 1
    return logit_sum / count


def infer_logits(
    model: nn.Module,
    images: torch.Tensor,
    *,
    mode: InferenceMode = "whole",
    crop_size: int | tuple[int, int] = 512,
    stride: int | tuple[int, int] = 341,
    num_classes: int | None = None,
) -> torch.Tensor:
    """Float32 logits (B, C, H, W) for normalized ``images`` (B, 3, H, W).

    ``whole`` runs one forward; ``slide`` runs ``crop_size`` windows every ``stride`` pixels (the
    last one flush with the border) and averages the logits where windows overlap. When
    ``num_classes`` is given, a model with another number of outputs is refused.
    """
    if mode == "whole":
        return _forward(model, images, num_classes)
    if mode != "slide":
        raise InferenceConfigError(f"unknown inference mode {mode!r}: use 'whole' or 'slide'")
    crop_size, stride = _pair(crop_size, "crop_size"), _pair(stride, "stride")
    if stride[0] > crop_size[0] or stride[1] > crop_size[1]:
        raise InferenceConfigError(f"stride {stride} larger than crop_size {crop_size} would leave pixels unseen")
    return _slide(model, images, crop_size, stride, num_classes)


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or min(pair) <= 0:
        raise InferenceConfigError(f"{name} must be a positive int or (height, width), got {value!r}")
    return pair  # type: ignore[return-value]


def predict_probs(
    model: nn.Module,
    images: torch.Tensor,
    out_size: tuple[int, int],
    options: InferenceOptions = InferenceOptions(),
    *,
    base_size: tuple[int, int] | None = None,
    num_classes: int | None = None,
    amp_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Class probabilities (B, C, *out_size) averaged over the test-time views of ``images``.

    Each view resizes ``images`` (bilinear) to ``scale * base_size`` (``base_size`` defaults to the
    input size): one view at scale 1 for ``options.tta`` ``none``, plus its mirror for ``flip``, every
    scale of ``options.scales`` with its mirror for ``ms-flip``; each view runs whole or in sliding
    windows (``options.mode``). A view's logits are resized to ``out_size`` and soft-maxed there, so
    views of different scales are averaged on the same grid. Only the running sum and one view are
    held in memory.
    """
    view_scales = tuple(options.scales) if options.tta == "ms-flip" else (1.0,)
    base_h, base_w = base_size if base_size is not None else images.shape[-2:]
    flips = (False, True) if options.tta != "none" else (False,)
    autocast = (
        torch.autocast(images.device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
    )
    prob_sum = None
    for scale in view_scales:
        size = (max(1, round(base_h * scale)), max(1, round(base_w * scale)))
        view = images
        if tuple(images.shape[-2:]) != size:
            view = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        for flip in flips:
            with autocast:
                logits = infer_logits(
                    model,
                    view.flip(-1) if flip else view,
                    mode=options.mode,
                    crop_size=options.crop_size,
                    stride=options.stride,
                    num_classes=num_classes,
                )
            if flip:
                logits = logits.flip(-1)
            if tuple(logits.shape[-2:]) != tuple(out_size):
                logits = F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)
            probs = logits.softmax(dim=1)
            prob_sum = probs if prob_sum is None else prob_sum.add_(probs)
            del logits, probs
    return prob_sum / (len(view_scales) * len(flips))
