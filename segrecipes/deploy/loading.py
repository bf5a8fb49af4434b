"""One loader for everything ``predict`` accepts: training runs and checkpoints, and exported models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from segrecipes.deploy.trained_model import TrainedModel, load_trained_model

from .errors import DeployError
from .hf_format import HUB_PREFIX, hub_folder, is_hf_folder, load_hf_folder
from .onnx_format import load_onnx_model
from .openvino_format import load_openvino_model
from .safetensors_format import load_exported_safetensors
from .torchscript_format import load_torchscript_model

# Exported models are recognised by suffix; anything else is a run folder or a training checkpoint.
EXPORTED_LOADERS: dict[str, Callable[[Path, torch.device], TrainedModel]] = {
    ".onnx": load_onnx_model,
    ".xml": load_openvino_model,
    ".torchscript": load_torchscript_model,
    ".safetensors": load_exported_safetensors,
}


def load_model(path: Path | str, device: torch.device | str = "cpu") -> TrainedModel:
    """A run folder, a checkpoint file, an exported ``.onnx`` / ``.xml`` (OpenVINO) / ``.torchscript`` /
    ``.safetensors`` model, a Hugging Face model folder or ``hf://OWNER/REPO``, with its config and class
    names, ready for inference on ``device``."""
    device = torch.device(device)
    if str(path).startswith(HUB_PREFIX):
        return load_hf_folder(hub_folder(str(path)), device)
    path = Path(path)
    if is_hf_folder(path):
        return load_hf_folder(path, device)
    loader = EXPORTED_LOADERS.get(path.suffix.lower())
    if loader is None:
        return load_trained_model(path, device)
    if not path.is_file():
        raise DeployError(f"{path}: model file not found")
    return loader(path, device)
