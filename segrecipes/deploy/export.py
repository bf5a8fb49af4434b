"""Export a trained model to ONNX (float32 or INT8), OpenVINO, TorchScript, safetensors or a Hugging Face
model folder, then prove the file computes the same logits as the PyTorch model by loading it back and
comparing on two input shapes (an INT8 model's difference is reported, and judged in mIoU instead:
:mod:`segrecipes.deploy.export_check`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from segrecipes.deploy.trained_model import TrainedModel

from .errors import DeployError, ExportCheckFailed
from .extras import require
from .hf_format import add_hf_metadata, write_hf_folder
from .loading import load_model
from .onnx_format import add_onnx_metadata, write_onnx
from .openvino_format import add_openvino_metadata, write_openvino
from .quantize import QUANTIZE_MODES, write_int8_onnx
from .safetensors_format import add_safetensors_metadata, write_safetensors
from .tracing import Shape, check_shapes, example_input
from .torchscript_format import add_torchscript_metadata, write_torchscript

# Accepted |exported - PyTorch| per unit of logit size: 1e-4 absolute for logits within +-1, and
# relative beyond, because float32 rounding grows with the values (an untrained R-101 with logits
# near 2e5 differs by ~0.2 between two correct fp32 runtimes, a trained one by ~1e-5). A real
# conversion error is of the order of the logits themselves.
MAX_ABS_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportFormat:
    suffix: str  # "" for a folder
    write: Callable[[TrainedModel, Path], None]
    add_metadata: Callable[[Path, dict[str, str]], None]  # the export check's numbers, after the fact
    needs: tuple[tuple[str, str], ...] = ()  # (package, extra): refused before anything is written


EXPORT_FORMATS: dict[str, ExportFormat] = {
    "onnx": ExportFormat(".onnx", write_onnx, add_onnx_metadata, (("onnx", "onnx"), ("onnxruntime", "onnx"))),
    "openvino": ExportFormat(".xml", write_openvino, add_openvino_metadata,
                             (("onnx", "onnx"), ("openvino", "openvino"))),
    "torchscript": ExportFormat(".torchscript", write_torchscript, add_torchscript_metadata),
    "safetensors": ExportFormat(".safetensors", write_safetensors, add_safetensors_metadata),
    "hf": ExportFormat("", write_hf_folder, add_hf_metadata, (("huggingface_hub", "hf"),)),
}


@dataclass
class ExportReport:
    path: Path
    format_name: str
    max_abs_diff: dict[Shape, float]  # per checked (batch, height, width)
    largest_logit: float  # the largest |PyTorch logit| over the checked inputs
    quantized: bool = False  # INT8: the difference is reported, not held to the tolerance

    @property
    def worst(self) -> float:
        return max(self.max_abs_diff.values())

    @property
    def tolerance(self) -> float:
        return MAX_ABS_TOLERANCE * max(1.0, self.largest_logit)

    @property
    def passed(self) -> bool:
        return self.quantized or self.worst <= self.tolerance

    def failure(self) -> str:
        shape = max(self.max_abs_diff, key=self.max_abs_diff.__getitem__)
        return (f"{self.path}: the {self.format_name} model differs from PyTorch by {self.worst:.2e} (> "
                f"{self.tolerance:.1e}) on a {shape[0]}x3x{shape[1]}x{shape[2]} input; the file is kept for inspection")


def export_format(format_name: str, quantize: str | None = None) -> ExportFormat:
    """The format called ``format_name``; ``quantize`` (``int8``) only with ``onnx``."""
    if format_name not in EXPORT_FORMATS:
        raise DeployError(f"--format {format_name!r}: unknown export format (use {', '.join(EXPORT_FORMATS)})")
    if quantize is not None and quantize not in QUANTIZE_MODES:
        raise DeployError(f"--quantize {quantize!r}: unknown (use {', '.join(QUANTIZE_MODES)})")
    if quantize is not None and format_name != "onnx":
        raise DeployError(f"--quantize {quantize} works with --format onnx (ONNX Runtime's quantizer), not {format_name}")
    for package, extra in EXPORT_FORMATS[format_name].needs:
        require(package, extra, f"--format {format_name}")
    return EXPORT_FORMATS[format_name]


def default_export_path(checkpoint: Path, format_name: str, quantize: str | None = None) -> Path:
    """``RUN/model.onnx`` (``model.int8.onnx``, the folder ``RUN/hf``) for a run folder, the checkpoint's own
    name otherwise (``last.onnx``, ``last-hf``)."""
    suffix = export_format(format_name, quantize).suffix
    suffix = f".{quantize}{suffix}" if quantize else suffix
    if not suffix:
        return checkpoint / format_name if checkpoint.is_dir() else checkpoint.with_name(f"{checkpoint.stem}-{format_name}")
    return checkpoint / f"model{suffix}" if checkpoint.is_dir() else checkpoint.with_suffix(suffix)


def compare(reference: torch.nn.Module, candidate: torch.nn.Module, shape: Shape) -> tuple[float, float]:
    """Max |candidate - reference| and max |reference| logit on random images of ``shape``."""
    images = example_input(*shape, seed=sum(shape))
    with torch.no_grad():
        expected = reference(images).float()
        return float((candidate(images).float() - expected).abs().max()), float(expected.abs().max())


def export_model(
    trained: TrainedModel, format_name: str, path: Path, shapes: Sequence[Shape] | None = None, *,
    quantize: str | None = None, calibration: Sequence[torch.Tensor] = (), calibration_split: str = "train",
    calibration_method: str = "percentile", license_name: str | None = None, strict: bool = True,
) -> ExportReport:
    """Write ``trained`` (moved to CPU, eval mode) to ``path`` and check it on ``shapes`` (default: two
    shapes from the run's eval size); a difference above the report's tolerance raises
    :class:`ExportCheckFailed` (``strict``) or is left to the caller (``report.passed``).
    ``quantize="int8"`` (ONNX) calibrates on the normalized ``calibration`` inputs (images of
    ``calibration_split``, ranges by ``calibration_method``); ``license_name`` is the licence of an ``hf``
    folder's card."""
    spec = export_format(format_name, quantize)
    if path.suffix.lower() != spec.suffix and spec.suffix:
        raise DeployError(f"{path}: a {format_name} export must end in {spec.suffix} (predict recognises models by suffix)")
    if not spec.suffix and path.exists() and not path.is_dir():
        raise DeployError(f"{path}: an {format_name} export is a folder, and this is a file")
    path.parent.mkdir(parents=True, exist_ok=True)
    model = trained.model.cpu().eval()
    if quantize:
        write_int8_onnx(trained, path, calibration, calibration_split, calibration_method)
    elif format_name == "hf" and license_name is not None:
        write_hf_folder(trained, path, license_name)
    else:
        spec.write(trained, path)
    exported = load_model(path, "cpu").model
    shapes = shapes or check_shapes(trained.config.eval.size)
    results = {shape: compare(model, exported, shape) for shape in shapes}
    report = ExportReport(path, format_name, {shape: diff for shape, (diff, _) in results.items()},
                          max(scale for _, scale in results.values()), quantized=quantize is not None)
    if strict and not report.passed:
        raise ExportCheckFailed(report.failure())
    return report
