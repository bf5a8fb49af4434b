"""Label maps (and colour overlays) for image files, by the standard protocol (SPEC §3), or in tiles.

Each image is resized keeping its aspect so that the short side is the eval size (the long side at
most ``max_long_side``), predicted with optional test-time augmentation and sliding windows, and
its probabilities are upsampled to the original size: exactly what ``segrecipes eval --protocol
standard`` scores, so a saved label map is the prediction that evaluation counts. With a ``tiling``
(large images: aerial scenes, slides, panoramas) the image is predicted at its own resolution in
overlapping tiles (:mod:`segrecipes.evaluation.tiles`), with the same test-time augmentation per tile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.progress import track
from torch import nn
from torchvision.io import write_png

from segrecipes.data.files import IMAGE_SUFFIXES, read_image
from segrecipes.data.spec import channel_stats
from segrecipes.data.normalize import normalize
from segrecipes.deploy.trained_model import TrainedModel
from segrecipes.evaluation.evaluate import standard_size
from segrecipes.evaluation.inference import predict_probs
from segrecipes.evaluation.options import InferenceOptions
from segrecipes.evaluation.overlay import render_overlay
from segrecipes.evaluation.tiles import check_tiling, memory_rows, tiled_rows

from .errors import DeployError

OVERLAY_SUFFIX = "_overlay"
_UINT8_VALUES = 256


@dataclass(frozen=True)
class Tiling:
    """``predict --tile SIZE --overlap FRACTION``: tiles of ``size`` pixels overlapping by that fraction."""

    size: int
    overlap: float = 0.25


def network_stride(trained: TrainedModel) -> int:
    """The stride of the network's coarsest features: a DeepLab's output stride, 32 for other smp encoders."""
    model = trained.config.model
    return model.output_stride if "deeplab" in model.name.lower() else 32


def check_tile(trained: TrainedModel, tiling: Tiling) -> None:
    """Refuse a tiling the model cannot use, before any image is read."""
    check_tiling(tiling.size, tiling.overlap)
    stride = network_stride(trained)
    if tiling.size < stride:
        raise DeployError(f"--tile {tiling.size}: smaller than the network's stride {stride} "
                          f"({trained.config.model.name}/{trained.config.model.backbone}); use at least {stride}")


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


def predict_labels(
    model: nn.Module, image: torch.Tensor, options: InferenceOptions, num_classes: int, device: torch.device,
    amp_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """int64 class indices (H, W) at the original size of the uint8 (3, H, W) ``image`` (or a normalized
    float32 (C, H, W) one), by the standard protocol whatever ``options.protocol`` says (there is no mask
    to resize)."""
    height, width = image.shape[-2:]
    with torch.inference_mode():
        probs = predict_probs(
            model, normalize(image[None].to(device)), (height, width), options,
            base_size=standard_size(height, width, options.size, options.max_long_side), num_classes=num_classes,
            amp_dtype=amp_dtype,
        )
    return probs.argmax(dim=1)[0]


def _tiled_labels(trained: TrainedModel, images: torch.Tensor, options: InferenceOptions, tiling: Tiling,
                  amp_dtype: torch.dtype | None) -> torch.Tensor:
    """(H, W) classes of one normalized image (1, C, H, W), band by band: never the whole image's scores."""
    height, width = images.shape[-2:]
    with torch.inference_mode():
        bands = tiled_rows(trained.model, memory_rows(images), height, width, options,
                           tile=tiling.size, overlap=tiling.overlap, num_classes=trained.num_classes,
                           amp_dtype=amp_dtype)
        return torch.cat([scores.argmax(dim=0).cpu() for _, scores in bands])


def predict_files(
    trained: TrainedModel,
    images: Sequence[Path],
    out_dir: Path,
    options: InferenceOptions,
    *,
    device: torch.device | str = "cpu",
    amp_dtype: torch.dtype | None = None,
    ade20k_submission: bool = False,
    overlay: bool = True,
    progress: bool = False,
    tiling: Tiling | None = None,
) -> None:
    """Write ``<stem>.png`` (uint8 class indices 0..C-1, or 1..C as the ADE20k benchmark expects
    with ``ade20k_submission``) and, with ``overlay``, ``<stem>_overlay.png`` for every image; with
    ``tiling``, each image is predicted at its own size in tiles."""
    offset = 1 if ade20k_submission else 0
    if trained.num_classes + offset > _UINT8_VALUES:
        raise DeployError(f"{trained.source}: {trained.num_classes} classes do not fit the uint8 values of a label PNG")
    if tiling is not None:
        check_tile(trained, tiling)
    _check_unique_outputs(images, out_dir, overlay)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    trained.model.eval()
    data = trained.config.data
    stats = channel_stats(data)  # the run's own normalization (data.mean/std), for other images than 8-bit RGB
    for path in track(images, description="predicting", disable=not progress):
        image = read_image(path, data.in_channels)
        model_input = stats(image) if stats is not None else image
        if tiling is None:
            labels = predict_labels(trained.model, model_input, options, trained.num_classes, device, amp_dtype).cpu()
        else:
            labels = _tiled_labels(trained, normalize(model_input[None].to(device)), options, tiling, amp_dtype)
        label_path, overlay_path = output_paths(path, out_dir)
        write_png((labels + offset).to(torch.uint8)[None], str(label_path))
        if overlay:
            write_png(render_overlay(image, labels, trained.class_names), str(overlay_path))
