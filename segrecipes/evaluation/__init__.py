"""Field-standard evaluation: dataset-level metrics, sliding-window and tiled inference, TTA, protocols."""

from __future__ import annotations

from segrecipes.evaluation.evaluate import EvaluationError, evaluate, standard_size
from segrecipes.evaluation.inference import infer_logits, predict_probs
from segrecipes.evaluation.metrics import ConfusionMatrix, MetricInputError, SegMetrics, format_table
from segrecipes.evaluation.options import DEFAULT_SCALES, InferenceConfigError, InferenceOptions
from segrecipes.evaluation.tiles import tiled_probs, tiled_rows

__all__ = [
    "DEFAULT_SCALES",
    "ConfusionMatrix",
    "EvaluationError",
    "InferenceConfigError",
    "InferenceOptions",
    "MetricInputError",
    "SegMetrics",
    "evaluate",
    "format_table",
    "infer_logits",
    "predict_probs",
    "standard_size",
    "tiled_probs",
    "tiled_rows",
]
