"""Using a trained model: prediction on image files, and export to ONNX, TorchScript or safetensors."""

from __future__ import annotations

from segrecipes.evaluation.overlay import class_palette, render_overlay

from .errors import DeployError
from .export import EXPORT_FORMATS, MAX_ABS_TOLERANCE, ExportReport, default_export_path, export_model
from .loading import load_model
from .onnx_format import ONNX_OPSET, OnnxRuntimeModel
from .predict import find_images, predict_files, predict_labels
from .safetensors_format import load_exported_safetensors

__all__ = [
    "EXPORT_FORMATS", "MAX_ABS_TOLERANCE", "ONNX_OPSET", "DeployError", "ExportReport", "OnnxRuntimeModel",
    "class_palette", "default_export_path", "export_model", "find_images",
    "load_exported_safetensors", "load_model", "predict_files", "predict_labels", "render_overlay",
]
