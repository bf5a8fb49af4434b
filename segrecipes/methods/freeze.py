"""Train only the head for the first part of a run: the pretrained backbone stays as it was loaded.

A randomly initialized head sends large, noisy gradients into a pretrained encoder during its first
steps; freezing the encoder meanwhile keeps its features. Frozen means: its parameters take no
gradient (so autograd records nothing for it, the optimizer skips them and weight decay does not
touch them) and its BatchNorm layers stay in eval mode (their running statistics are the pretrained
ones, and batch statistics of a new dataset would shift them). Under DDP the frozen parameters are
unused: the trainer wraps the model with ``find_unused_parameters`` because of
:attr:`FreezeBackbone.leaves_parameters_unused`.
"""

from __future__ import annotations

import torch
from torch import nn

from segrecipes.methods.base import ORDER_BATCH_CONTENT, Method, StepContext


def set_frozen(backbone: nn.Module, frozen: bool, training: bool = True) -> None:
    """Freeze ``backbone`` (no gradients, BatchNorm in eval mode) or release it into ``training`` mode."""
    backbone.requires_grad_(not frozen)
    for module in backbone.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.train(training and not frozen)


class FreezeBackbone(Method):
    """``backbone`` frozen for the steps ``1..steps`` (or while the run's fraction done is below
    ``fraction``, for a run on a wall-clock budget), trained with the rest afterwards."""

    name = "freeze_backbone"
    order = ORDER_BATCH_CONTENT
    leaves_parameters_unused = True

    def __init__(self, backbone: nn.Module, steps: int | None = None, fraction: float | None = None) -> None:
        if (steps is None) == (fraction is None):
            raise ValueError("FreezeBackbone: give steps or fraction")
        self.backbone, self.steps, self.fraction = backbone, steps, fraction
        self.frozen: bool | None = None

    def is_frozen(self, context: StepContext) -> bool:
        if self.steps is not None:
            return context.step <= self.steps
        return context.fraction < self.fraction  # type: ignore[operator]

    def transform_batch(
        self, context: StepContext, images: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Before each step's forward: the trainer puts the model back in training mode after every
        evaluation, so the frozen BatchNorm layers are set to eval mode again here."""
        frozen = self.is_frozen(context)
        if frozen or frozen != self.frozen:
            set_frozen(self.backbone, frozen, context.model.training)
        self.frozen = frozen
        return images, target
