"""Training methods of the recipes: each a functional core plus a thin trainer hook (see base.py)."""

from __future__ import annotations

from segrecipes.methods.base import Method, StepContext, StepResult, StepTools, arrange
from segrecipes.methods.channels_last import ChannelsLast, apply_channels_last
from segrecipes.methods.ema import EMA, compute_ema
from segrecipes.methods.freeze import FreezeBackbone, set_frozen
from segrecipes.methods.loss import NAMED_LOSSES, SegmentationLoss, dice_loss, index_cross_entropy, soft_cross_entropy
from segrecipes.methods.mixup import MixUp, mixup_segmentation
from segrecipes.methods.sam import SAM, sam_step

__all__ = [
    "EMA",
    "NAMED_LOSSES",
    "SAM",
    "ChannelsLast",
    "FreezeBackbone",
    "Method",
    "MixUp",
    "SegmentationLoss",
    "StepContext",
    "StepResult",
    "StepTools",
    "apply_channels_last",
    "arrange",
    "compute_ema",
    "dice_loss",
    "index_cross_entropy",
    "mixup_segmentation",
    "sam_step",
    "set_frozen",
    "soft_cross_entropy",
]
