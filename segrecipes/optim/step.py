"""An optimizer step that is skipped when the gradients are not finite, decided on the device.

A skipped step leaves the weights and the optimizer state exactly as they were. Reading a flag on
the host to decide would synchronize with the GPU every step and stall the launch queue, so:

* with a grad scaler, the scaler decides (and backs off); whether it skipped is read from its scale,
  as a tensor;
* without one, a ``found_inf`` tensor is handed to optimizers whose kernels honour it (torch's fused
  SGD and AdamW, and :class:`~segrecipes.optim.SGDW`), exactly as torch's grad scaler does;
* only an optimizer that cannot skip on the device is skipped from the host, at one sync per step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def nonfinite(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """A 0-dim float tensor: 1.0 when any element of ``tensors`` is inf or NaN, else 0.0 (no host sync)."""
    if not tensors:
        return torch.zeros(())
    total = torch.stack(torch._foreach_norm(list(tensors))).sum()
    return (~torch.isfinite(total)).float()


def gradients(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [param.grad for group in optimizer.param_groups for param in group["params"] if param.grad is not None]


def skips_on_device(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step()`` honours a ``found_inf`` tensor (the contract of torch's grad scaler)."""
    fused = all(group.get("fused") is not False for group in optimizer.param_groups)
    return bool(getattr(optimizer, "_step_supports_amp_scaling", False)) and fused


def optimizer_step(
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None = None,
    found_inf: torch.Tensor | None = None,
) -> torch.Tensor:
    """Step ``optimizer`` unless its gradients, or ``found_inf`` (an extra reason), are non-finite.

    Returns a 0-dim bool tensor, True when the step was skipped. With an enabled ``scaler`` the
    gradients are scaled, and the scaler unscales, checks, steps and updates its scale.
    """
    grads = gradients(optimizer)
    if scaler is not None and scaler.is_enabled():
        if found_inf is not None and grads:  # make the scaler see the overflow: it then skips and backs off
            first = grads[0][(0,) * grads[0].dim()]
            first.add_(torch.where(found_inf > 0, math.inf, 0.0).to(first.dtype))
        before = scaler._get_scale_async().clone()  # the tensor, not get_scale(): that would sync
        scaler.step(optimizer)
        scaler.update()
        return scaler._get_scale_async() < before
    flag = nonfinite(grads).to(grads[0].device if grads else "cpu")
    if found_inf is not None:
        flag = torch.maximum(flag, found_inf.to(flag.device, flag.dtype))
    if skips_on_device(optimizer):
        optimizer.found_inf, optimizer.grad_scale = flag, None  # type: ignore[attr-defined]
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf, optimizer.grad_scale  # type: ignore[attr-defined]
    elif not flag.item():  # this optimizer can only be skipped from the host: one sync per step
        optimizer.step()
    return flag > 0
