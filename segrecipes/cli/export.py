"""``segrecipes export``: a trained model as ONNX, TorchScript or safetensors, checked against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from segrecipes.deploy.errors import DeployError
from segrecipes.deploy.export import MAX_ABS_TOLERANCE, default_export_path, export_model
from segrecipes.deploy.loading import load_model
from segrecipes.deploy.onnx_format import ONNX_OPSET

_COMPILED_SUFFIXES = (".onnx", ".torchscript")


def export_command(
    checkpoint: Annotated[Path, typer.Option(help="Run folder, checkpoint file or .safetensors export.")],
    format_name: Annotated[str, typer.Option("--format", help="onnx | torchscript | safetensors")],
    out: Annotated[Optional[Path], typer.Option(help="Output file (default: RUN/model.<ext>, or beside the file).")] = None,
) -> None:
    """Export the evaluation weights (EMA where used); prints the max abs difference to PyTorch."""
    if checkpoint.suffix.lower() in _COMPILED_SUFFIXES:
        raise DeployError(f"{checkpoint}: export needs PyTorch weights (a run folder, checkpoint or .safetensors file)")
    path = out or default_export_path(checkpoint, format_name)
    report = export_model(load_model(checkpoint, "cpu"), format_name, path)
    console = Console()
    opset = f" (opset {ONNX_OPSET})" if format_name == "onnx" else ""
    console.print(f"wrote {report.path}{opset}")
    for (batch, height, width), difference in report.max_abs_diff.items():
        console.print(f"  max abs difference vs PyTorch on {batch}x3x{height}x{width}: {difference:.2e}")
    console.print(f"  within the tolerance {report.tolerance:.1e} ({MAX_ABS_TOLERANCE:.0e} x max(1, largest |logit| "
                  f"{report.largest_logit:.3g}))")
