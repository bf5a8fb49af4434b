"""The few places where a training method plugs into the trainer, and the order they run in.

A method overrides only the hooks it needs. Every hook gets the same :class:`StepContext` (where the
run is: step, epoch, fraction done, the bare training model), so a method whose behaviour follows
the schedule can be written without looking at the trainer. Methods never look at each other.

Per step the trainer calls, for every method in :func:`arrange` order: ``transform_batch``, then
the first ``optimizer_step`` that takes the step (else its plain step), then ``after_step``.
``prepare_model`` runs once before training, ``eval_model`` whenever the model is evaluated or saved.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from segrecipes.errors import ConfigError

# Hook order, lowest first: what changes the batch's content, then its layout, then the step, then
# what follows the step. Methods of other authors run after these unless they say otherwise.
ORDER_BATCH_CONTENT = 10
ORDER_LAYOUT = 20
ORDER_STEP = 30
ORDER_AFTER_STEP = 40
ORDER_DEFAULT = 50


@dataclass(frozen=True)
class StepContext:
    """Where the run is when a hook is called.

    During a step's hooks ``step`` is that step's number (counting from 1) and ``fraction`` the share
    of the run done before it; in ``prepare_model`` and ``eval_model`` they describe the steps taken.
    ``model`` is the bare training model (no DDP or ``torch.compile`` wrapper)."""

    step: int
    epoch: int
    fraction: float
    model: nn.Module


@dataclass(frozen=True)
class StepTools:
    """What a method needs to take over the optimizer step (SAM does).

    ``compute_grads(sync)`` zeroes the gradients, runs forward and backward over every microbatch of
    the current batch and returns the mean loss (detached); with ``sync=False`` a DDP model skips the
    gradient all-reduce. Gradients are scaled when ``scaler`` is set. Finish with
    :func:`segrecipes.optim.optimizer_step`, which skips a non-finite step on the device."""

    compute_grads: Callable[[bool], torch.Tensor]
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None


@dataclass(frozen=True)
class StepResult:
    """``loss``: the batch's mean loss at the weights before the step; ``skipped``: a 0-dim bool tensor,
    True when the step was not taken (non-finite) and the weights are unchanged. Both stay on the
    device: reading them would synchronize."""

    loss: torch.Tensor
    skipped: torch.Tensor


class Method:
    """Base class of a training method; every hook defaults to doing nothing."""

    name = "method"
    order = ORDER_DEFAULT
    # True for a method that leaves some parameters without gradients in some steps: DDP must then look
    # for unused parameters (a little slower), or it would wait for their gradients forever
    leaves_parameters_unused = False

    def prepare_model(self, context: StepContext, model: nn.Module) -> nn.Module:
        """Called once on the bare model, before DDP wraps it; must keep its parameter objects."""
        return model

    def transform_batch(
        self, context: StepContext, images: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Called on each (normalized, on-device) training batch. ``target`` is (B, H, W) class
        indices with the ignore index, MixUp's :class:`~segrecipes.methods.targets.MixedTarget`, or a
        (B, C, H, W) dense target from a user's own data or method."""
        return images, target

    def optimizer_step(self, context: StepContext, tools: StepTools) -> StepResult | None:
        """Take this step in place of the trainer's plain step, or return None to leave it."""
        return None

    def after_step(self, context: StepContext) -> None:
        """Called after every optimizer step, taken or skipped."""

    def eval_model(self, context: StepContext, model: nn.Module) -> nn.Module:
        """The model to evaluate and save as the result (EMA returns its averaged copy)."""
        return model

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


def takes_optimizer_step(method: Method) -> bool:
    return type(method).optimizer_step is not Method.optimizer_step


def arrange(methods: Sequence[Method]) -> list[Method]:
    """``methods`` in hook order (by ``order``, then as given), refusing combinations that cannot work:
    two methods of one name (their checkpoint state would collide) or two that take the optimizer step."""
    names = [method.name for method in methods]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"methods: {', '.join(repeated)} given more than once")
    stepping = [method.name for method in methods if takes_optimizer_step(method)]
    if len(stepping) > 1:
        raise ConfigError(f"methods: {' and '.join(stepping)} both take over the optimizer step; use one of them")
    return sorted(methods, key=lambda method: method.order)
