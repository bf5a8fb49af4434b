"""The export check in mIoU: the exported model and the PyTorch model scored on the same images by the run's
evaluation protocol, with the share of pixels whose class changed and each one's speed on this machine.

A random-input logit comparison proves a float32 export computes the same function; it says nothing of what
INT8 rounding, or a runtime's own numerics, cost on real images. This check does, on the user's own data.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from segrecipes.evaluation.evaluate import RawSegmentationDataset, Sample, evaluate
from segrecipes.evaluation.options import InferenceOptions

from .metadata import EXPORT_CHECK_KEY

DEFAULT_MAX_DROP = 0.05  # mIoU points: a float32 export should change a handful of pixels at most
DEFAULT_MAX_DROP_INT8 = 0.5


@dataclass(frozen=True)
class ExportCheck:
    data: str
    images: int
    protocol: str
    reference_miou: float  # percent
    exported_miou: float
    changed_pixels: float  # share of scored pixels whose predicted class differs, 0..1
    reference_images_per_s: float
    exported_images_per_s: float
    max_drop: float

    @property
    def drop(self) -> float:
        return self.reference_miou - self.exported_miou

    @property
    def passed(self) -> bool:
        return self.drop <= self.max_drop

    def metadata(self) -> dict[str, str]:
        return {EXPORT_CHECK_KEY: json.dumps({**asdict(self), "miou_drop": self.drop, "passed": self.passed})}

    def lines(self) -> list[str]:
        return [
            f"mIoU check on {self.images} images of {self.data} ({self.protocol} protocol):",
            f"  PyTorch  mIoU {self.reference_miou:.2f}  {self.reference_images_per_s:.2f} images/s",
            f"  exported mIoU {self.exported_miou:.2f}  {self.exported_images_per_s:.2f} images/s "
            f"({self.exported_images_per_s / self.reference_images_per_s:.2f}x)",
            f"  difference {self.exported_miou - self.reference_miou:+.2f} mIoU (allowed drop {self.max_drop:g}); "
            f"{100 * self.changed_pixels:.3f}% of pixels changed class",
        ]


def _timed_scores(model: nn.Module, samples: Sequence[Sample], options: InferenceOptions, num_classes: int,
                  ignore_index: int, keep: list[torch.Tensor]) -> tuple[float, float]:
    """(mIoU, images/s) of ``model``; every scored prediction is appended to ``keep`` (uint8 or int16, CPU).
    One image runs first untimed, so that a runtime's one-off set-up is not counted as speed."""
    evaluate(model, samples[:1], options, num_classes=num_classes, ignore_index=ignore_index, device="cpu")
    dtype = torch.uint8 if num_classes <= 256 else torch.int16
    start = time.perf_counter()
    metrics = evaluate(model, samples, options, num_classes=num_classes, ignore_index=ignore_index, device="cpu",
                       on_scored=lambda prediction, _: keep.append(prediction.to("cpu", dtype)))
    return metrics.miou, len(samples) / (time.perf_counter() - start)


def check_export(
    reference: nn.Module, exported: nn.Module, dataset: RawSegmentationDataset, options: InferenceOptions, *,
    num_classes: int, ignore_index: int, images: int, data_name: str, max_drop: float,
) -> ExportCheck:
    """Score both models on the first ``images`` samples of ``dataset`` (decoded once, before timing) on the CPU."""
    samples = [dataset[index] for index in range(min(images, len(dataset)))]
    predictions: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
    reference_miou, reference_speed = _timed_scores(reference, samples, options, num_classes, ignore_index,
                                                    predictions[0])
    exported_miou, exported_speed = _timed_scores(exported, samples, options, num_classes, ignore_index,
                                                  predictions[1])
    changed = sum(int((a != b).sum()) for a, b in zip(*predictions, strict=True))
    total = sum(prediction.numel() for prediction in predictions[0])
    return ExportCheck(data_name, len(samples), options.protocol, reference_miou, exported_miou, changed / total,
                       reference_speed, exported_speed, max_drop)
