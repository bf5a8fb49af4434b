"""Dataset-level segmentation metrics from one confusion matrix (SPEC §2 Metrics).

Per-image metrics averaged over images are not what the field reports: mIoU is computed from
intersections and unions summed over the whole dataset (and all ranks), so the only state is a
C x C count matrix that never grows, however many pixels are added.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from rich.table import Table


class MetricInputError(ValueError):
    """Predictions or targets that cannot be scored (wrong shape, class index out of range)."""


SUMMARY_METRICS = ("miou", "pixel_acc", "mean_acc", "mean_dice", "ade_score")
PER_CLASS_METRICS = ("iou", "acc", "dice")
METRIC_ALIASES = {"mdice": "mean_dice", "macc": "mean_acc", "aacc": "pixel_acc"}  # mmseg's names


def metric_key_error(name: str, class_names: Sequence[str]) -> str | None:
    """Why ``name`` is not a metric of these classes (None: it is one). Metrics are a summary name
    (``miou``, ``mdice``, ...) or ``<iou|acc|dice>/<class name>``."""
    kind, _, class_name = name.partition("/")
    if not class_name:
        if METRIC_ALIASES.get(name, name) in SUMMARY_METRICS:
            return None
        return f"unknown metric {name!r}: use one of {', '.join([*SUMMARY_METRICS, *METRIC_ALIASES])} or iou/<class>"
    if kind not in PER_CLASS_METRICS:
        return f"unknown metric {name!r}: a per-class metric is iou/<class>, acc/<class> or dice/<class>"
    if class_names and class_name not in class_names:
        return f"metric {name!r}: no class {class_name!r} (classes: {', '.join(class_names)})"
    return None


@dataclass(frozen=True)
class SegMetrics:
    """All numbers in percent; per-class entries are NaN where the class never occurred."""

    pixel_acc: float
    miou: float
    mean_acc: float
    mean_dice: float
    ade_score: float
    iou: list[float]
    acc: list[float]
    dice: list[float]
    class_names: tuple[str, ...]
    # counts[target, prediction] of every labelled pixel (int64, CPU), kept out of the per-row dicts
    confusion: torch.Tensor | None = field(default=None, repr=False, compare=False)

    def value(self, name: str) -> float:
        """The metric ``name`` (see :func:`metric_key_error`), NaN where it is undefined."""
        error = metric_key_error(name, self.class_names)
        if error is not None:
            raise MetricInputError(error)
        kind, _, class_name = name.partition("/")
        if class_name:
            return getattr(self, kind)[self.class_names.index(class_name)]
        return getattr(self, METRIC_ALIASES.get(name, name))

    def worst(self, count: int = 3) -> list[tuple[str, float]]:
        """The ``count`` classes of lowest IoU (classes never seen are left out), lowest first."""
        scored = [(name, iou) for name, iou in zip(self.class_names, self.iou) if not math.isnan(iou)]
        return sorted(scored, key=lambda item: item[1])[:count]

    def summary(self) -> dict[str, float | None]:
        """The dataset-level numbers, under the names every output uses (NaN becomes None)."""
        return {key: _json_safe(getattr(self, key)) for key in SUMMARY_METRICS}

    def to_dict(self) -> dict[str, Any]:
        """The dataset-level numbers and, per metric, ``{class name: value}``: the one layout that
        ``eval --json``, ``summary.json`` and ``best.pt`` share (NaN becomes None)."""
        per_class = {
            key: {name: _json_safe(value) for name, value in zip(self.class_names, getattr(self, key))}
            for key in PER_CLASS_METRICS
        }
        return {**self.summary(), **per_class}


def _json_safe(value: float) -> float | None:
    return None if math.isnan(value) else value


class ConfusionMatrix:
    """Counts ``matrix[target, prediction]`` over every labelled pixel seen so far.

    Each update is a single ``torch.bincount`` on the device; ignored pixels are routed to an
    extra bin that is dropped, so no data-dependent indexing is needed.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, device: torch.device | str | None = None) -> None:
        if num_classes < 1:
            raise MetricInputError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def reset(self) -> None:
        self.matrix.zero_()

    @torch.no_grad()
    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add class-index ``prediction`` and ``target`` of the same shape (any number of dims)."""
        if prediction.shape != target.shape:
            raise MetricInputError(
                f"prediction shape {tuple(prediction.shape)} does not match target shape {tuple(target.shape)}"
            )
        classes = self.num_classes
        prediction = prediction.to(self.matrix.device, torch.int64)
        target = target.to(self.matrix.device, torch.int64)
        labelled = target != self.ignore_index
        bad_target = labelled & ((target < 0) | (target >= classes))
        bad_prediction = labelled & ((prediction < 0) | (prediction >= classes))
        target_is_bad, prediction_is_bad = torch.stack([bad_target.any(), bad_prediction.any()]).tolist()
        if target_is_bad:
            found = target[bad_target].unique()[:5].tolist()
            raise MetricInputError(
                f"target has class indices {found} outside 0..{classes - 1} that are not the ignore index "
                f"{self.ignore_index} (check num_classes / reduce_zero_label / ignore_value)"
            )
        if prediction_is_bad:
            found = prediction[bad_prediction].unique()[:5].tolist()
            raise MetricInputError(f"prediction has class indices {found} outside 0..{classes - 1}")
        index = torch.where(labelled, target * classes + prediction, classes * classes)
        counts = torch.bincount(index.flatten(), minlength=classes * classes + 1)
        self.matrix += counts[: classes * classes].view(classes, classes)

    def all_reduce(self) -> None:
        """Sum the counts of every rank (call once, after the last update); no-op without DDP."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.matrix, op=dist.ReduceOp.SUM)

    def compute(self, class_names: Sequence[str] | None = None) -> SegMetrics:
        """The metrics of everything added; classes are named ``class_names`` (default ``class_<i>``)."""
        names = tuple(class_names) if class_names is not None else tuple(f"class_{i}" for i in range(self.num_classes))
        if len(names) != self.num_classes:
            raise MetricInputError(f"{len(names)} class names for {self.num_classes} classes")
        matrix = self.matrix.double().cpu()
        true_positive = matrix.diagonal()
        in_target = matrix.sum(dim=1)
        in_prediction = matrix.sum(dim=0)
        union = in_target + in_prediction - true_positive
        nan = torch.full_like(true_positive, math.nan)
        iou = torch.where(union > 0, true_positive / union, nan) * 100
        acc = torch.where(in_target > 0, true_positive / in_target, nan) * 100
        dice = torch.where(union > 0, 2 * true_positive / (in_target + in_prediction), nan) * 100
        total = matrix.sum()
        pixel_acc = (true_positive.sum() / total).item() * 100 if total > 0 else math.nan
        miou = iou.nanmean().item()
        return SegMetrics(
            pixel_acc=pixel_acc,
            miou=miou,
            mean_acc=acc.nanmean().item(),
            mean_dice=dice.nanmean().item(),
            ade_score=(pixel_acc + miou) / 2,
            iou=iou.tolist(),
            acc=acc.tolist(),
            dice=dice.tolist(),
            class_names=names,
            confusion=self.matrix.cpu().clone(),
        )


def format_table(metrics: SegMetrics) -> Table:
    """Per-class IoU / accuracy / Dice, then the dataset-level summary as the last row."""
    summary = f"pixel acc {_cell(metrics.pixel_acc)}  mIoU {_cell(metrics.miou)}  ADE score {_cell(metrics.ade_score)}"
    table = Table(title="Segmentation metrics (%)", caption=summary)
    table.add_column("class")
    for header in ("IoU", "Acc", "Dice"):
        table.add_column(header, justify="right")
    for name, iou, acc, dice in zip(metrics.class_names, metrics.iou, metrics.acc, metrics.dice):
        table.add_row(name, _cell(iou), _cell(acc), _cell(dice))
    table.add_section()
    table.add_row("mean", _cell(metrics.miou), _cell(metrics.mean_acc), _cell(metrics.mean_dice), style="bold")
    return table


def _cell(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"
