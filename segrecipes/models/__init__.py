"""Segmentation networks: the reference DeepLabv3+ and any segmentation_models_pytorch architecture."""

from __future__ import annotations

from .backbone import ResNetBackbone
from .deeplabv3plus import DeepLabV3Plus, DeepLabV3PlusHead
from .factory import build_model, describe_model
from .flops import forward_flops
from .smp_model import SMPModel, smp_architectures
from .weights import ModelError, hub_checkpoint_path

__all__ = [
    "DeepLabV3Plus",
    "DeepLabV3PlusHead",
    "ModelError",
    "ResNetBackbone",
    "SMPModel",
    "build_model",
    "describe_model",
    "forward_flops",
    "hub_checkpoint_path",
    "smp_architectures",
]
