"""Training methods of the recipes: each a functional core plus a thin trainer hook."""

from __future__ import annotations

from segrecipes.methods.channels_last import ChannelsLast, apply_channels_last
from segrecipes.methods.ema import EMA, ema_update, split_tensors
from segrecipes.methods.factory import build_methods
from segrecipes.methods.loss import SegmentationLoss, dice_loss, index_cross_entropy, soft_cross_entropy
from segrecipes.methods.mixup import MixUp, mixup_segmentation
from segrecipes.methods.sam import SAM, sam_step

__all__ = [
    "EMA",
    "SAM",
    "ChannelsLast",
    "MixUp",
    "SegmentationLoss",
    "apply_channels_last",
    "build_methods",
    "dice_loss",
    "ema_update",
    "index_cross_entropy",
    "mixup_segmentation",
    "sam_step",
    "soft_cross_entropy",
    "split_tensors",
]
