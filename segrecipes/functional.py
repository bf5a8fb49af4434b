"""The pure cores of the training methods, for use in your own training loop.

Each takes tensors, modules or an optimizer and changes nothing else; the trainer's methods
(:mod:`segrecipes.methods`) are thin hooks around them.
"""

from __future__ import annotations

from segrecipes.methods.channels_last import apply_channels_last
from segrecipes.methods.ema import compute_ema, smoothing_for, warmup_smoothing
from segrecipes.methods.freeze import set_frozen
from segrecipes.methods.loss import dice_loss, index_cross_entropy, soft_cross_entropy
from segrecipes.methods.mixup import mixup_segmentation
from segrecipes.methods.sam import sam_step
from segrecipes.optim.step import optimizer_step

__all__ = [
    "apply_channels_last",
    "compute_ema",
    "dice_loss",
    "index_cross_entropy",
    "mixup_segmentation",
    "optimizer_step",
    "sam_step",
    "set_frozen",
    "smoothing_for",
    "soft_cross_entropy",
    "warmup_smoothing",
]
