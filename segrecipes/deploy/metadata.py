"""What an exported model carries besides its weights, so that it can be used on its own.

Every format (ONNX metadata props, safetensors header, TorchScript extra file) holds the same flat
``str -> str`` mapping: the run's config, the class names, the ignore index and the input
normalization. With it a deployed model is rebuilt, or run, without the training checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from segrecipes.config import RunConfig, build_config
from segrecipes.data.normalize import IMAGENET_MEAN, IMAGENET_STD
from segrecipes.deploy.trained_model import TrainedModel

from .errors import DeployError

CONFIG_KEY = "segrecipes.config"
CLASS_NAMES_KEY = "segrecipes.class_names"
IGNORE_INDEX_KEY = "segrecipes.ignore_index"
MEAN_KEY = "segrecipes.normalization.mean"
STD_KEY = "segrecipes.normalization.std"
INPUT_KEY = "segrecipes.input"  # what the model takes, in words
EXPORT_CHECK_KEY = "segrecipes.export_check"  # the mIoU check's numbers, JSON (export --check-data)
QUANTIZATION_KEY = "segrecipes.quantization"  # how an INT8 export was calibrated, JSON
REQUIRED_KEYS = (CONFIG_KEY, CLASS_NAMES_KEY, IGNORE_INDEX_KEY)
INPUT_DESCRIPTION = (
    "float32 RGB images (batch, 3, height, width), any height and width, normalized as "
    "(pixel / 255 - mean) / std; outputs float32 logits (batch, classes, height, width)"
)
# a run with data.mean/std of its own (other weights' statistics, other bands): in the images' stored units
STORED_UNITS_DESCRIPTION = (
    "float32 images (batch, {channels}, height, width), any height and width, normalized per channel as "
    "(pixel - mean) / std in the images' stored units; outputs float32 logits (batch, classes, height, width)"
)


@dataclass
class ModelInfo:
    """Everything but the network: enough to rebuild it from weights, or to use a compiled one."""

    config: RunConfig
    class_names: list[str]
    ignore_index: int

    def with_model(self, model: nn.Module, source: Path) -> TrainedModel:
        return TrainedModel(model, self.config, self.class_names, self.ignore_index, source)


def model_metadata(trained: TrainedModel) -> dict[str, str]:
    """The flat string mapping every export format stores next to the weights."""
    data = trained.config.data
    own = isinstance(data.mean, list) and isinstance(data.std, list)
    return {
        CONFIG_KEY: json.dumps(trained.config.to_dict()),
        CLASS_NAMES_KEY: json.dumps(trained.class_names),
        IGNORE_INDEX_KEY: str(trained.ignore_index),
        INPUT_KEY: STORED_UNITS_DESCRIPTION.format(channels=data.in_channels) if own else INPUT_DESCRIPTION,
        MEAN_KEY: json.dumps(data.mean if own else list(IMAGENET_MEAN)),
        STD_KEY: json.dumps(data.std if own else list(IMAGENET_STD)),
    }


def read_metadata(metadata: dict[str, str], source: Path) -> ModelInfo:
    """Parse what :func:`model_metadata` wrote; ``source`` names the file in error messages."""
    missing = [key for key in REQUIRED_KEYS if key not in metadata]
    if missing:
        raise DeployError(f"{source}: no segrecipes metadata ({missing[0]!r} missing); use `segrecipes export`")
    try:
        config_data = json.loads(metadata[CONFIG_KEY])
        class_names = json.loads(metadata[CLASS_NAMES_KEY])
        ignore_index = int(metadata[IGNORE_INDEX_KEY])
    except ValueError as error:  # json.JSONDecodeError is one
        raise DeployError(f"{source}: unreadable segrecipes metadata ({type(error).__name__})") from None
    if not isinstance(config_data, dict) or not isinstance(class_names, list):
        raise DeployError(f"{source}: unreadable segrecipes metadata (config or class names malformed)")
    return ModelInfo(build_config(config_data, str(source)), [str(name) for name in class_names], ignore_index)
