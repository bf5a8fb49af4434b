"""Label maps (and colour overlays) for image files, by the standard protocol (SPEC §3).

Each image is resized keeping its aspect so that the short side is the eval size (the long side at
most ``max_long_side``), predicted with optional test-time augmentation and sliding windows, and
its probabilities are upsampled to the original size: exactly what ``segrecipes eval --protocol
standard`` scores, so a saved label map is the prediction that evaluation counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.progress import track
from torch import nn
from torchvision.io import ImageReadMode, decode_image, write_png

from segrecipes.data.files import IMAGE_SUFFIXES
from segrecipes.data.normalize import normalize
from segrecipes.engine.trained_model import TrainedModel
from segrecipes.evaluation.evaluate import standard_size
from segrecipes.evaluation.inference import DEFAULT_SCALES, InferenceMode, TTAMode, predict_probs

from .errors import DeployError
from .overlay import render_overlay

OVERLAY_SUFFIX = "_overlay"
_UINT8_VALUES = 256


@dataclass(frozen=True)
class PredictOptions:
    """How each image is predicted; see :func:`segrecipes.evaluation.inference.predict_probs`."""

    eval_size: int
    tta: TTAMode = "none"
    scales: tuple[float, ...] = DEFAULT_SCALES
    mode: InferenceMode = "whole"
    crop_size: int = 512
    stride: int = 341
    max_long_side: int = 2048
    amp_dtype: torch.dtype | None = None


def find_images(inputs: Sequence[Path]) -> list[Path]:
    """Image files named directly, and the images (by suffix) directly inside named folders."""
    images: list[Path] = []
    for path in inputs:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DeployError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            images += found
        elif path.is_file():
            images.append(path)
        else:
            raise DeployError(f"{path}: input image or folder not found")
    return images


def output_paths(image: Path, out_dir: Path) -> tuple[Path, Path]:
    """Where the label map and the overlay of ``image`` go."""
    return out_dir / f"{image.stem}.png", out_dir / f"{image.stem}{OVERLAY_SUFFIX}.png"


def _check_unique_outputs(images: Sequence[Path], out_dir: Path, overlay: bool) -> None:
    owners: dict[Path, Path] = {}
    for image in images:
        label_path, overlay_path = output_paths(image, out_dir)
        for output in (label_path, overlay_path) if overlay else (label_path,):
            if output in owners:
                raise DeployError(f"{image}: its output {output.name} would overwrite that of {owners[output]}")
            owners[output] = image


def read_image(path: Path) -> torch.Tensor:
    """uint8 RGB (3, H, W); grey and RGBA images are converted."""
    try:
        return decode_image(str(path), mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DeployError(f"{path}: cannot read image ({reason})") from None


def predict_labels(
    model: nn.Module, image: torch.Tensor, options: PredictOptions, num_classes: int, device: torch.device
) -> torch.Tensor:
    """int64 class indices (H, W) at the original size of the uint8 (3, H, W) ``image``."""
    height, width = image.shape[-2:]
    with torch.inference_mode():
        probs = predict_probs(
            model,
            normalize(image[None].to(device)),
            (height, width),
            tta=options.tta,
            scales=options.scales,
            base_size=standard_size(height, width, options.eval_size, options.max_long_side),
            mode=options.mode,
            crop_size=options.crop_size,
            stride=options.stride,
            num_classes=num_classes,
            amp_dtype=options.amp_dtype,
        )
    return probs.argmax(dim=1)[0]


def predict_files(
    trained: TrainedModel,
    images: Sequence[Path],
    out_dir: Path,
    options: PredictOptions,
    *,
    device: torch.device | str = "cpu",
    ade20k_submission: bool = False,
    overlay: bool = True,
    progress: bool = False,
) -> None:
    """Write ``<stem>.png`` (uint8 class indices 0..C-1, or 1..C as the ADE20k benchmark expects
    with ``ade20k_submission``) and, with ``overlay``, ``<stem>_overlay.png`` for every image."""
    offset = 1 if ade20k_submission else 0
    if trained.num_classes + offset > _UINT8_VALUES:
        raise DeployError(f"{trained.source}: {trained.num_classes} classes do not fit the uint8 values of a label PNG")
    _check_unique_outputs(images, out_dir, overlay)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    trained.model.eval()
    for path in track(images, description="predicting", disable=not progress):
        image = read_image(path)
        labels = predict_labels(trained.model, image, options, trained.num_classes, device).cpu()
        label_path, overlay_path = output_paths(path, out_dir)
        write_png((labels + offset).to(torch.uint8)[None], str(label_path))
        if overlay:
            write_png(render_overlay(image, labels, trained.class_names), str(overlay_path))
