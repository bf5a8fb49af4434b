"""``segrecipes export``: a trained model as ONNX (float32 or INT8), OpenVINO, TorchScript, safetensors or a
Hugging Face model folder, checked against PyTorch on random inputs and, with ``--check-data``, in mIoU."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from segrecipes.deploy.errors import DeployError, ExportCheckFailed
from segrecipes.deploy.export import MAX_ABS_TOLERANCE, default_export_path, export_format, export_model
from segrecipes.deploy.export_check import DEFAULT_MAX_DROP, DEFAULT_MAX_DROP_INT8, check_export
from segrecipes.deploy.loading import load_model
from segrecipes.deploy.onnx_format import ONNX_OPSET
from segrecipes.deploy.quantize import calibration_inputs, check_calibration_method
from segrecipes.deploy.trained_model import scoring_data, with_data_spec

_COMPILED_SUFFIXES = (".onnx", ".torchscript", ".xml")


def export_command(
    checkpoint: Annotated[Path, typer.Option(help="Run folder, checkpoint file or .safetensors export.")],
    format_name: Annotated[str, typer.Option("--format", help="onnx | openvino | torchscript | safetensors | hf")],
    out: Annotated[Optional[Path], typer.Option(help="Output file, or folder for hf (default: RUN/model.<ext>, "
                                                     "RUN/hf, or beside the file).")] = None,
    quantize: Annotated[Optional[str], typer.Option(help="int8: ONNX Runtime static quantization (--format onnx), "
                                                         "calibrated on the run's data.")] = None,
    calibration_split: Annotated[str, typer.Option(help="train | val: the split INT8 is calibrated on.")] = "train",
    calibration_images: Annotated[int, typer.Option(help="How many images INT8 is calibrated on.")] = 32,
    calibration_method: Annotated[str, typer.Option(help="percentile | minmax: INT8 activation ranges.")] = "percentile",
    calibration_data: Annotated[Optional[str], typer.Option(help="Dataset spec to calibrate on (default: the "
                                                                 "run's own).")] = None,
    check_data: Annotated[Optional[str], typer.Option(help="Dataset spec: score the export and PyTorch in mIoU "
                                                           "on its validation split (e.g. camvid:/data/CamVid).")] = None,
    check_images: Annotated[int, typer.Option(help="How many validation images the mIoU check scores.")] = 100,
    max_miou_drop: Annotated[Optional[float], typer.Option(help=f"Largest mIoU drop the check accepts (default "
                                                                f"{DEFAULT_MAX_DROP_INT8} for int8, "
                                                                f"{DEFAULT_MAX_DROP} otherwise); above it exit 1.")] = None,
    license_name: Annotated[Optional[str], typer.Option("--license", help="The model card's license field "
                                                                          "(hf; default: other).")] = None,
) -> None:
    """Export the evaluation weights (EMA where used); prints the max abs difference to PyTorch and, with
    --check-data, both mIoU, their difference, the pixels that changed class and each one's images/s."""
    if checkpoint.suffix.lower() in _COMPILED_SUFFIXES:
        raise DeployError(f"{checkpoint}: export needs PyTorch weights (a run folder, checkpoint or .safetensors file)")
    export_format(format_name, quantize)
    check_calibration_method(calibration_method)
    if check_images < 1:
        raise DeployError(f"--check-images {check_images}: give at least 1 image")
    if license_name is not None and format_name != "hf":
        raise DeployError(f"--license is the model card's field: it needs --format hf, not {format_name}")
    path = out or default_export_path(checkpoint, format_name, quantize)
    trained = load_model(checkpoint, "cpu")
    check_config, check_set = scoring_data(trained, trained.config, check_data) if check_data else (None, None)
    calibration = []
    if quantize:
        calibration = calibration_inputs(with_data_spec(trained.config, calibration_data), calibration_split,
                                         calibration_images)
    report = export_model(trained, format_name, path, quantize=quantize, calibration=calibration,
                          calibration_split=calibration_split, calibration_method=calibration_method,
                          license_name=license_name, strict=False)
    console = Console()
    detail = f" (opset {ONNX_OPSET})" if format_name == "onnx" else ""
    detail += (f", INT8 calibrated on {len(calibration)} {calibration_split} images ({calibration_method})"
               if quantize else "")
    console.print(f"wrote {report.path}{detail}")
    for (batch, height, width), difference in report.max_abs_diff.items():
        console.print(f"  max abs difference vs PyTorch on {batch}x3x{height}x{width}: {difference:.2e}")
    if report.quantized:
        console.print("  (INT8: judged in mIoU, not by the float32 tolerance" +
                      (")" if check_data else "; give --check-data to measure it)"))
    else:
        console.print(f"  {'within' if report.passed else 'ABOVE'} the tolerance {report.tolerance:.1e} "
                      f"({MAX_ABS_TOLERANCE:.0e} x max(1, largest |logit| {report.largest_logit:.3g}))")
    if check_config is None or check_set is None:
        if not report.passed:
            raise ExportCheckFailed(report.failure())
        return
    allowed = max_miou_drop if max_miou_drop is not None else DEFAULT_MAX_DROP_INT8 if quantize else DEFAULT_MAX_DROP
    check = check_export(trained.model, load_model(path, "cpu").model, check_set, check_config.eval,
                         num_classes=trained.num_classes, ignore_index=trained.ignore_index, images=check_images,
                         data_name=check_config.data.spec, max_drop=allowed)
    export_format(format_name).add_metadata(path, check.metadata())
    for line in check.lines():
        console.print(line)
    if check.passed and not report.passed:
        raise ExportCheckFailed(report.failure())
    if not check.passed:
        raise ExportCheckFailed(f"{path}: the export loses {check.drop:.2f} mIoU (PyTorch {check.reference_miou:.2f}, "
                                f"exported {check.exported_miou:.2f}) > --max-miou-drop {allowed:g}; the file is kept "
                                "with these numbers in its metadata")
