"""Weights-only export: the evaluation weights (EMA where the run used it) in a safetensors file
whose header holds the config and class names, from which the PyTorch model is rebuilt."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from segrecipes.deploy.trained_model import TrainedModel, rebuild_trained_model

from .errors import DeployError
from .metadata import model_metadata, read_metadata


def write_safetensors(trained: TrainedModel, path: Path, extra: dict[str, str] | None = None) -> None:
    """The weights with the model metadata (and ``extra`` entries) in the header."""
    weights = {name: tensor.detach().cpu().contiguous() for name, tensor in trained.model.state_dict().items()}
    save_file(weights, str(path), metadata={**model_metadata(trained), **(extra or {})})


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return {name: handle.get_tensor(name) for name in handle.keys()}, handle.metadata() or {}
    except (OSError, SafetensorError) as error:
        raise DeployError(f"{path}: not a readable safetensors file ({type(error).__name__})") from None


def read_safetensors_metadata(path: Path) -> dict[str, str]:
    return _read(path)[1]


def add_safetensors_metadata(path: Path, extra: dict[str, str]) -> None:
    weights, metadata = _read(path)
    save_file(weights, str(path), metadata={**metadata, **extra})


def load_exported_safetensors(path: Path | str, device: torch.device | str = "cpu") -> TrainedModel:
    """Rebuild the network described by the file's metadata and load its weights (strictly)."""
    path = Path(path)
    weights, metadata = _read(path)
    info = read_metadata(metadata, path)
    return rebuild_trained_model(info.config, info.class_names, info.ignore_index, weights, path, device)
