"""Build the configured network, and describe it in numbers."""

from __future__ import annotations

from typing import Any

from torch import nn

from .settings import ModelSettings
from .deeplabv3plus import DeepLabV3Plus
from .flops import forward_flops
from .smp_model import SMP_PREFIX, SMPModel
from .weights import ModelError


def build_model(cfg: ModelSettings, num_classes: int, in_channels: int = 3) -> nn.Module:
    """``deeplabv3plus`` (the reference) or ``smp:<Arch>`` for ``in_channels`` images; logits at the input size."""
    if num_classes < 1:
        raise ModelError(f"num_classes: must be at least 1, got {num_classes}")
    if cfg.name == "deeplabv3plus":
        return DeepLabV3Plus(
            cfg.backbone, num_classes, cfg.output_stride, cfg.weights, cfg.dropout, cfg.head_channels, in_channels
        )
    if cfg.name.startswith(SMP_PREFIX):
        arch = cfg.name.removeprefix(SMP_PREFIX)
        return SMPModel(arch, cfg.backbone, num_classes, cfg.output_stride, cfg.weights, in_channels)
    raise ModelError(f"model.name: unknown model {cfg.name!r} (use 'deeplabv3plus' or 'smp:<Arch>')")


def describe_model(model: nn.Module, image_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """Class, parameter counts and, given ``(height, width)``, forward GFLOPs per image."""
    parameters = list(model.parameters())
    description: dict[str, Any] = {
        "class": type(model).__name__,
        "parameters": sum(p.numel() for p in parameters),
        "trainable_parameters": sum(p.numel() for p in parameters if p.requires_grad),
    }
    if image_size is not None:
        description["forward_gflops"] = forward_flops(model, *image_size) / 1e9
    return description
