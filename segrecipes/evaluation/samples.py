"""A fixed handful of validation images rendered as image / ground truth / prediction at each
evaluation, so a run shows what its predictions look like while it trains."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from segrecipes.evaluation.evaluate import scored_batches
from segrecipes.evaluation.options import InferenceOptions
from segrecipes.evaluation.overlay import render_comparison


def choose_samples(dataset_size: int, count: int, seed: int) -> list[int]:
    """``count`` image indices drawn once from ``seed`` and the dataset size alone, so every evaluation,
    and a resumed run, shows the same images; in dataset order."""
    generator = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(dataset_size, generator=generator)[:count].tolist())


MAX_SIDE = 512  # a panel's longer side: 8 samples of a 2048-wide dataset would be tens of MB per evaluation


def _fit(image: torch.Tensor, mask: torch.Tensor, prediction: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Image (antialiased) and label maps (nearest) scaled down to at most ``MAX_SIDE`` on the longer side."""
    height, width = mask.shape
    if max(height, width) <= MAX_SIDE:
        return image, mask, prediction
    size = [max(1, round(height * MAX_SIDE / max(height, width))), max(1, round(width * MAX_SIDE / max(height, width)))]
    nearest = TF.InterpolationMode.NEAREST_EXACT
    return (TF.resize(image, size, antialias=True), TF.resize(mask[None], size, interpolation=nearest)[0],
            TF.resize(prediction[None], size, interpolation=nearest)[0])


def render_samples(
    model: nn.Module, dataset: Dataset, indices: Sequence[int], options: InferenceOptions, class_names: Sequence[str],
    *, ignore_index: int = 255, device: torch.device | str = "cpu", amp_dtype: torch.dtype | None = None,
) -> dict[int, torch.Tensor]:
    """Index -> uint8 (3, H, W) comparison panel, each scored as the evaluation protocol scores it. Runs
    on this process alone (no collective), with the model in eval mode and restored afterwards."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    panels = {}
    try:
        with torch.inference_mode():
            for index in indices:
                (images, masks, predictions), = scored_batches(model, [dataset[index]], options, device,
                                                               len(class_names), amp_dtype)
                image, mask, prediction = _fit(images[0], masks[0], predictions[0])
                panels[index] = render_comparison(image, mask, prediction, class_names, ignore_index)
    finally:
        model.train(was_training)
    return panels
