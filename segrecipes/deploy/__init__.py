"""Using a trained model: prediction on image files, and export to ONNX, TorchScript or safetensors."""

from __future__ import annotations

from .errors import DeployError
from .export import EXPORT_FORMATS, MAX_ABS_TOLERANCE, ExportReport, default_export_path, export_model
from .loading import load_model
from .onnx_format import ONNX_OPSET, OnnxRuntimeModel
from .overlay import class_palette, render_overlay
from .predict import PredictOptions, find_images, predict_files, predict_labels, read_image
from .safetensors_format import load_exported_safetensors

__all__ = [
    "EXPORT_FORMATS", "MAX_ABS_TOLERANCE", "ONNX_OPSET", "DeployError", "ExportReport", "OnnxRuntimeModel",
    "PredictOptions", "class_palette", "default_export_path", "export_model", "find_images",
    "load_exported_safetensors", "load_model", "predict_files", "predict_labels", "read_image", "render_overlay",
]
