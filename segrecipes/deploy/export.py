"""Export a trained model to ONNX, TorchScript or safetensors, then prove the file computes the same
logits as the PyTorch model by loading it back and comparing on two input shapes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from segrecipes.deploy.trained_model import TrainedModel

from .errors import DeployError
from .loading import load_model
from .onnx_format import write_onnx
from .safetensors_format import write_safetensors
from .tracing import Shape, check_shapes, example_input
from .torchscript_format import write_torchscript

# Accepted |exported - PyTorch| per unit of logit size: 1e-4 absolute for logits within +-1, and
# relative beyond, because float32 rounding grows with the values (an untrained R-101 with logits
# near 2e5 differs by ~0.2 between two correct fp32 runtimes, a trained one by ~1e-5). A real
# conversion error is of the order of the logits themselves.
MAX_ABS_TOLERANCE = 1e-4
EXPORT_FORMATS: dict[str, tuple[str, Callable[[TrainedModel, Path], None]]] = {
    "onnx": (".onnx", write_onnx),
    "torchscript": (".torchscript", write_torchscript),
    "safetensors": (".safetensors", write_safetensors),
}


@dataclass
class ExportReport:
    path: Path
    format_name: str
    max_abs_diff: dict[Shape, float]  # per checked (batch, height, width)
    largest_logit: float  # the largest |PyTorch logit| over the checked inputs

    @property
    def worst(self) -> float:
        return max(self.max_abs_diff.values())

    @property
    def tolerance(self) -> float:
        return MAX_ABS_TOLERANCE * max(1.0, self.largest_logit)


def _format_suffix(format_name: str) -> str:
    if format_name not in EXPORT_FORMATS:
        raise DeployError(f"--format {format_name!r}: unknown export format (use {', '.join(EXPORT_FORMATS)})")
    return EXPORT_FORMATS[format_name][0]


def default_export_path(checkpoint: Path, format_name: str) -> Path:
    """``RUN/model.onnx`` for a run folder, the checkpoint's own name otherwise (``last.onnx``)."""
    suffix = _format_suffix(format_name)
    return checkpoint / f"model{suffix}" if checkpoint.is_dir() else checkpoint.with_suffix(suffix)


def compare(reference: torch.nn.Module, candidate: torch.nn.Module, shape: Shape) -> tuple[float, float]:
    """Max |candidate - reference| and max |reference| logit on random images of ``shape``."""
    images = example_input(*shape, seed=sum(shape))
    with torch.no_grad():
        expected = reference(images).float()
        return float((candidate(images).float() - expected).abs().max()), float(expected.abs().max())


def export_model(
    trained: TrainedModel, format_name: str, path: Path, shapes: Sequence[Shape] | None = None
) -> ExportReport:
    """Write ``trained`` (moved to CPU, eval mode) to ``path`` and check it on ``shapes`` (default:
    two shapes from the run's eval size); a difference above the report's tolerance is an error."""
    suffix = _format_suffix(format_name)
    if path.suffix.lower() != suffix:
        raise DeployError(f"{path}: a {format_name} export must end in {suffix} (predict recognises models by suffix)")
    path.parent.mkdir(parents=True, exist_ok=True)
    model = trained.model.cpu().eval()
    EXPORT_FORMATS[format_name][1](trained, path)
    exported = load_model(path, "cpu").model
    shapes = shapes or check_shapes(trained.config.eval.size)
    results = {shape: compare(model, exported, shape) for shape in shapes}
    report = ExportReport(path, format_name, {shape: diff for shape, (diff, _) in results.items()},
                          max(scale for _, scale in results.values()))
    if report.worst > report.tolerance:
        shape = max(report.max_abs_diff, key=report.max_abs_diff.__getitem__)
        raise DeployError(
            f"{path}: the {format_name} model differs from PyTorch by {report.worst:.2e} (> {report.tolerance:.1e}) "
            f"on a {shape[0]}x3x{shape[1]}x{shape[2]} input; the file is kept for inspection"
        )
    return report
