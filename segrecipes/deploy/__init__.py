"""Using a trained model: prediction on image files (in tiles, GeoTIFFs), and export to ONNX (float32 or INT8),
OpenVINO, TorchScript, safetensors or a Hugging Face model folder, checked against PyTorch."""

from __future__ import annotations

from segrecipes.evaluation.overlay import class_palette, render_overlay

from .errors import DeployError, ExportCheckFailed
from .export import EXPORT_FORMATS, MAX_ABS_TOLERANCE, ExportReport, default_export_path, export_model
from .export_check import ExportCheck, check_export
from .loading import load_model
from .onnx_format import ONNX_OPSET, OnnxRuntimeModel
from .predict import Tiling, find_images, predict_files, predict_labels
from .safetensors_format import load_exported_safetensors

__all__ = [
    "EXPORT_FORMATS", "MAX_ABS_TOLERANCE", "ONNX_OPSET", "DeployError", "ExportCheck", "ExportCheckFailed",
    "ExportReport", "OnnxRuntimeModel", "Tiling", "check_export",
    "class_palette", "default_export_path", "export_model", "find_images",
    "load_exported_safetensors", "load_model", "predict_files", "predict_labels", "render_overlay",
]
