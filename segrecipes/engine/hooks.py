"""The few places where a training method plugs into the trainer.

A method overrides only the hooks it needs; the trainer calls every enabled method at each hook
in the order they are listed. Methods never look at each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn


@dataclass
class StepContext:
    """What a method needs to take over the optimizer step (SAM does).

    ``compute_grads(sync)`` zeroes the gradients, runs forward and backward over every
    microbatch of the current batch and returns the mean loss (detached). With ``sync=False``
    a DDP model skips the gradient all-reduce. Gradients are scaled when ``scaler`` is set.
    """

    step: int
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    compute_grads: Callable[[bool], torch.Tensor]


class Method:
    """Base class of a training method; every hook defaults to doing nothing."""

    name = "method"

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Called once on the bare model, before the optimizer and DDP wrap it."""
        return model

    def transform_batch(self, images: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Called on each (normalized, on-device) training batch. ``target`` is (B, H, W) class
        indices with the ignore index, or a (B, C, H, W) dense target once a method made one."""
        return images, target

    def optimizer_step(self, context: StepContext) -> tuple[torch.Tensor, bool] | None:
        """Return ``(loss, stepped)`` to replace the trainer's plain step, or None to leave it."""
        return None

    def after_step(self, model: nn.Module, step: int) -> None:
        """Called after every optimizer step with the (unwrapped) training model; ``step`` counts from 1."""

    def eval_model(self, model: nn.Module) -> nn.Module:
        """The model to evaluate and save as the result (EMA returns its averaged copy)."""
        return model

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
