"""Sharpness-aware minimization (SAM): descend with the gradient taken at the worst nearby weights.

On a SAM step: ``g = grad L(w)``; ``e = rho * g / (||g||_2 + eps)`` with the norm over all parameters;
``g' = grad L(w + e)``; restore ``w`` exactly; base-optimizer step with ``g'`` (SPEC §2). It costs a
second forward/backward on SAM steps, which ``interval`` amortizes.

Non-finite steps are skipped like plain ones, decided on the device (no host sync): a non-finite
first gradient makes ``e`` non-finite, the second pass runs on garbage, ``w`` is restored anyway and
the base step is skipped (with a grad scaler, the scaler is made to see the overflow and backs off).
``e`` is computed from the unscaled gradient. Under DDP the first pass skips the gradient all-reduce
(each rank ascends along its own gradient); the second pass is all-reduced, so every rank sees the
same finiteness and skips alike. ``w`` is restored even when the second pass raises (e.g. out of
memory), so a retry starts from the original weights.

The optimizer is not wrapped, so the learning-rate schedule keeps driving it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from segrecipes.errors import ConfigError
from segrecipes.methods.base import ORDER_STEP, Method, StepContext, StepResult, StepTools
from segrecipes.optim.step import optimizer_step


def sam_step(
    compute_grads: Callable[[bool], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    rho: float,
    scaler: torch.amp.GradScaler | None = None,
    epsilon: float = 1e-12,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One SAM update; returns ``(loss at w, skipped)``, both 0-dim tensors on the device.

    ``compute_grads(sync)`` must zero the gradients, run forward and backward over the whole batch
    (every microbatch) and return the detached loss; gradients are scaled when ``scaler`` is given.
    """
    if scaler is not None and not scaler.is_enabled():
        scaler = None
    loss = compute_grads(False)
    params = [param for group in optimizer.param_groups for param in group["params"] if param.grad is not None]
    grads = [param.grad for param in params]
    grad_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    if scaler is not None:
        grad_norm = grad_norm / scaler._get_scale_async()  # the tensor: get_scale() would sync
    first_nonfinite = (~torch.isfinite(grad_norm)).float()
    with torch.no_grad():
        originals = torch._foreach_mul(params, 1.0)
        # e = rho * g / (||g|| + eps), written over the first gradients (the second pass makes new ones)
        coefficient = rho / (grad_norm + epsilon)
        if scaler is not None:
            coefficient = coefficient / scaler._get_scale_async()
        torch._foreach_mul_(grads, coefficient)
        torch._foreach_add_(params, grads)
    try:
        compute_grads(True)
    finally:
        with torch.no_grad():
            torch._foreach_copy_(params, originals)
    return loss, optimizer_step(optimizer, scaler, found_inf=first_nonfinite)


class SAM(Method):
    """Takes over the optimizer step every ``interval`` steps (steps count from 1: interval 2 -> steps 2, 4, ...).

    Works with gradient accumulation because the trainer's ``compute_grads`` covers every microbatch.
    """

    name = "sam"
    order = ORDER_STEP

    def __init__(self, rho: float = 0.3, interval: int = 1, epsilon: float = 1e-12) -> None:
        if rho <= 0:
            raise ConfigError(f"sam.rho must be positive, got {rho!r}")
        if interval < 1:
            raise ConfigError(f"sam.interval must be >= 1, got {interval!r}")
        self.rho = rho
        self.interval = interval
        self.epsilon = epsilon

    def optimizer_step(self, context: StepContext, tools: StepTools) -> StepResult | None:
        if context.step % self.interval != 0:
            return None
        loss, skipped = sam_step(tools.compute_grads, tools.optimizer, self.rho, tools.scaler, self.epsilon)
        return StepResult(loss, skipped)
