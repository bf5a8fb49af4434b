"""The pretrained part of a network: what ``model.freeze_backbone`` freezes and ``backbone_lr_mult`` scales."""

from __future__ import annotations

from torch import nn


def backbone_of(model: nn.Module) -> nn.Module | None:
    """``model.backbone`` (the reference DeepLabv3+, and many users' models), else the encoder of an smp
    network (``model.model.encoder`` inside :class:`~segrecipes.models.smp_model.SMPModel`, or
    ``model.encoder``); None when the model names no such part."""
    for owner in (model, getattr(model, "model", None)):
        for name in ("backbone", "encoder"):
            part = getattr(owner, name, None)
            if isinstance(part, nn.Module):
                return part
    return None
