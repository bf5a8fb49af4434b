"""Sharpness-aware minimization (SAM): descend with the gradient taken at the worst nearby weights.

On a SAM step: ``g = grad L(w)``; ``e = rho * g / (||g||_2 + eps)`` with the norm over all parameters;
``g' = grad L(w + e)``; restore ``w`` exactly; base-optimizer step with ``g'`` (SPEC §2). It costs a
second forward/backward on SAM steps, which ``interval`` amortizes.

Mixed precision: ``e`` is computed from the unscaled gradient (the grad scaler's scale only divides it
out; ``scaler.unscale_`` is left to ``scaler.step``, which may call it once per update). An overflow in
the first pass skips the step before ``w`` moves; one in the second pass skips it after ``w`` is
restored; either way the scaler backs off. Under DDP the first pass skips the gradient all-reduce (each
rank ascends along its own gradient) and the ranks agree on the overflow flag so they branch alike.

The optimizer is not wrapped, so the learning-rate scheduler keeps driving it unchanged.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.distributed as dist

from segrecipes.config import ConfigError, SAMConfig
from segrecipes.engine.hooks import Method, StepContext


def _any_rank_overflowed(grad_norm: torch.Tensor) -> bool:
    """True when the gradient norm is not finite on this rank or, under torch.distributed, on any rank."""
    overflow = (~torch.isfinite(grad_norm)).float()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(overflow, op=dist.ReduceOp.MAX)
    return bool(overflow.item())


def sam_step(
    compute_grads: Callable[[bool], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    rho: float,
    scaler: torch.amp.GradScaler | None = None,
    epsilon: float = 1e-12,
) -> tuple[torch.Tensor, bool]:
    """One SAM update; returns ``(loss at w, stepped)``.

    ``compute_grads(sync)`` must zero the gradients, run forward and backward over the whole batch
    (every microbatch) and return the detached loss; gradients are scaled when ``scaler`` is given.
    """
    if scaler is not None and not scaler.is_enabled():
        scaler = None
    loss = compute_grads(False)
    params = [param for group in optimizer.param_groups for param in group["params"] if param.grad is not None]
    grads = [param.grad for param in params]
    inv_scale = 1.0 / scaler.get_scale() if scaler is not None else 1.0
    grad_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))

    if scaler is not None and _any_rank_overflowed(grad_norm):
        # Make sure this rank's scaler sees the overflow too, so every rank skips and backs off alike.
        grads[0].fill_(float("inf"))
        scaler.step(optimizer)
        scaler.update()
        return loss, False

    with torch.no_grad():
        originals = [param.detach().clone() for param in params]
        coefficient = rho * inv_scale / (grad_norm * inv_scale + epsilon)
        torch._foreach_add_(params, torch._foreach_mul(grads, coefficient))
    compute_grads(True)
    with torch.no_grad():
        torch._foreach_copy_(params, originals)

    if scaler is None:
        optimizer.step()
        return loss, True
    scale_before = scaler.get_scale()
    scaler.step(optimizer)
    scaler.update()
    return loss, scaler.get_scale() >= scale_before


class SAM(Method):
    """Takes over the optimizer step every ``interval`` steps (steps count from 1: interval 2 -> steps 2, 4, ...).

    Works with gradient accumulation because the trainer's ``compute_grads`` covers every microbatch.
    """

    name = "sam"

    def __init__(self, rho: float = 0.3, interval: int = 1, epsilon: float = 1e-12) -> None:
        if rho <= 0:
            raise ConfigError(f"sam.rho must be positive, got {rho!r}")
        if interval < 1:
            raise ConfigError(f"sam.interval must be >= 1, got {interval!r}")
        self.rho = rho
        self.interval = interval
        self.epsilon = epsilon

    @classmethod
    def from_config(cls, config: SAMConfig) -> SAM:
        return cls(config.rho, config.interval, config.epsilon)

    def optimizer_step(self, context: StepContext) -> tuple[torch.Tensor, bool] | None:
        if context.step % self.interval != 0:
            return None
        return sam_step(context.compute_grads, context.optimizer, self.rho, context.scaler, self.epsilon)
