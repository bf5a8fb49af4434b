"""Score a model on a raw segmentation dataset under one of the two protocols (SPEC §3).

``reference`` resizes image and mask to ``eval_size`` squared, as the recipe numbers were measured;
``standard`` resizes only the image (short side ``eval_size``, aspect kept) and scores the
prediction at the original resolution against the untouched mask, as public model zoos do.
Under torch.distributed each rank scores a disjoint slice of the images and the confusion
matrices are summed, so every image counts exactly once and every rank returns the same numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import torch
import torch.distributed as dist
from rich.progress import track
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision.transforms.v2 import functional as TF

from segrecipes.data.normalize import normalize
from segrecipes.evaluation.inference import predict_probs
from segrecipes.evaluation.metrics import ConfusionMatrix, SegMetrics
from segrecipes.evaluation.options import InferenceOptions

Sample = tuple[torch.Tensor, torch.Tensor]
ScoredCallback = Callable[[torch.Tensor, torch.Tensor], None]


class RawSegmentationDataset(Protocol):
    """``ds[i] -> (uint8 image (3, H, W) RGB, integer mask (H, W) with 255 = ignore)`` at original size."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...


class EvaluationError(ValueError):
    """Evaluation settings or dataset samples that cannot be scored."""


def standard_size(height: int, width: int, short_side: int, max_long_side: int) -> tuple[int, int]:
    """Aspect-preserving size with the short side ``short_side`` unless the long side would pass
    ``max_long_side`` (mmseg's ``Resize(scale=(2048, 512), keep_ratio=True)``)."""
    scale = min(short_side / min(height, width), max_long_side / max(height, width))
    return int(height * scale + 0.5), int(width * scale + 0.5)


def protocol_input(image: torch.Tensor, options: InferenceOptions) -> torch.Tensor:
    """The normalized (1, C, h, w) input that the protocol's plain view (no TTA) feeds the model for one raw
    (C, H, W) image: what calibrating a quantized model on the protocol's inputs needs."""
    if options.protocol == "reference":
        return normalize(TF.resize(image, [options.size, options.size], antialias=True)[None])
    size = standard_size(*image.shape[-2:], options.size, options.max_long_side)
    return torch.nn.functional.interpolate(normalize(image[None]), size=size, mode="bilinear", align_corners=False)


def _keep_as_list(samples: list[Sample]) -> list[Sample]:
    """Collate that does not stack: images of different sizes travel as a list."""
    return samples


def _checked(sample: Sample, device: torch.device) -> Sample:
    image, mask = sample
    if image.ndim != 3 or mask.shape != image.shape[1:]:
        raise EvaluationError(
            f"dataset sample has image {tuple(image.shape)} and mask {tuple(mask.shape)}: "
            "expected (C, H, W) and (H, W)"
        )
    return image.to(device, non_blocking=True), mask.to(device, torch.int64, non_blocking=True)


def _reference_batches(samples: list[Sample], size: int, device: torch.device) -> Iterator[Sample]:
    """One batch at size x size: images antialiased-bilinear and masks nearest-exact, which is
    pixel-for-pixel what PIL (used by the reference recipe) produces."""
    images, masks = [], []
    for sample in samples:
        image, mask = _checked(sample, device)
        images.append(TF.resize(image, [size, size], antialias=True))
        masks.append(TF.resize(mask[None], [size, size], interpolation=TF.InterpolationMode.NEAREST_EXACT)[0])
    yield torch.stack(images), torch.stack(masks)


def _same_size_batches(samples: list[Sample], device: torch.device) -> Iterator[Sample]:
    """Originals grouped by size (first-seen order), so differently sized images run one by one."""
    groups: dict[tuple[int, int], list[Sample]] = {}
    for sample in samples:
        image, mask = _checked(sample, device)
        groups.setdefault(tuple(mask.shape), []).append((image, mask))
    for group in groups.values():
        images, masks = zip(*group)
        yield torch.stack(images), torch.stack(masks)


def _model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def evaluate(
    model: nn.Module,
    dataset: RawSegmentationDataset,
    options: InferenceOptions = InferenceOptions(),
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    ignore_index: int = 255,
    device: torch.device | str | None = None,
    amp_dtype: torch.dtype | None = None,
    progress: bool = False,
    num_workers: int = 0,
    on_scored: ScoredCallback | None = None,
) -> SegMetrics:
    """Dataset-level metrics of ``model`` (unwrapped, not DDP) on ``dataset`` under ``options``.

    The classes are ``class_names`` or ``num_classes`` or, by default, the dataset's own
    (``class_names`` / ``num_classes`` attributes). ``on_scored(prediction, mask)`` is called with every
    image's (H, W) prediction and ground truth exactly as they were scored. The model's train/eval
    mode is restored afterwards.
    """
    class_names = list(class_names or getattr(dataset, "class_names", None) or [])
    num_classes = num_classes or len(class_names) or getattr(dataset, "num_classes", None)
    if not num_classes:
        raise EvaluationError("evaluate: give num_classes or class_names (the dataset has neither attribute)")
    device = torch.device(device) if device is not None else _model_device(model)
    distributed = dist.is_available() and dist.is_initialized()
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    loader = DataLoader(
        Subset(dataset, range(rank, len(dataset), world_size)),
        batch_size=options.batch_size,
        num_workers=num_workers,
        collate_fn=_keep_as_list,
        pin_memory=device.type == "cuda",
    )
    confusion = ConfusionMatrix(num_classes, ignore_index=ignore_index, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for samples in track(loader, description="evaluating", disable=not progress or rank != 0):
                for images, masks, predictions in scored_batches(model, samples, options, device, num_classes,
                                                                 amp_dtype):
                    confusion.update(predictions, masks)
                    if on_scored is not None:
                        for prediction, mask in zip(predictions, masks):
                            on_scored(prediction, mask)
    finally:
        model.train(was_training)
    confusion.all_reduce()
    return confusion.compute(class_names or None)


def scored_batches(
    model: nn.Module, samples: list[Sample], options: InferenceOptions, device: torch.device, num_classes: int,
    amp_dtype: torch.dtype | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(images, masks, predictions)`` of raw ``samples`` as the protocol scores them: uint8 images and
    masks at the scored resolution and the (B, H, W) predicted classes. The model must be in eval mode."""
    predict = functools.partial(predict_probs, model, options=options, num_classes=num_classes, amp_dtype=amp_dtype)
    if options.protocol == "reference":
        batches = _reference_batches(samples, options.size, device)
    else:
        batches = _same_size_batches(samples, device)
    for images, masks in batches:
        height, width = masks.shape[-2:]
        base_size = (
            (height, width) if options.protocol == "reference"
            else standard_size(height, width, options.size, options.max_long_side)
        )
        yield images, masks, predict(normalize(images), (height, width), base_size=base_size).argmax(dim=1)
