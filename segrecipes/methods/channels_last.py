"""channels_last (NHWC) memory format: cuDNN's fastest layout for convolutions under mixed precision.

Converting the model once and each input batch avoids the layout transposes that a mixed
NCHW/NHWC graph would otherwise insert before every convolution.
"""

from __future__ import annotations

import torch
from torch import nn

from segrecipes.methods.base import ORDER_LAYOUT, Method, StepContext


def apply_channels_last(model: nn.Module) -> nn.Module:
    """Convert every 4-D parameter and buffer of ``model`` to channels_last, in place; returns ``model``."""
    return model.to(memory_format=torch.channels_last)


class ChannelsLast(Method):
    """Puts the model and every (B, C, H, W) training batch in channels_last; targets are left alone."""

    name = "channels_last"
    order = ORDER_LAYOUT

    def prepare_model(self, context: StepContext, model: nn.Module) -> nn.Module:
        return apply_channels_last(model)

    def transform_batch(
        self, context: StepContext, images: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return images.contiguous(memory_format=torch.channels_last), target
