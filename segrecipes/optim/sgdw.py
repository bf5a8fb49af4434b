"""The reference optimizer: SGD with decoupled weight decay ("SGDW", SPEC §2).

Unlike ``torch.optim.SGD(weight_decay=...)``, the decay is not added to the gradient (so momentum never
sees it) and it follows the learning-rate schedule: each step does ``p *= 1 - (lr_t / lr_0) * wd``
before the usual momentum update.

It runs on torch's fused SGD kernel, which can skip a step on the device: given a ``found_inf``
tensor (set by :func:`segrecipes.optim.optimizer_step` or by a grad scaler), neither the decay nor the
momentum update happens when it is 1, and no host-device synchronization is needed to decide.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class SGDW(torch.optim.SGD):
    """SGD whose ``weight_decay`` is decoupled from the gradient and scaled by ``lr_t / lr_0``.

    ``coupled_weight_decay`` is torch's classic L2 term added to the gradient (the unoptimized
    baseline uses it). Momentum buffers start at zero rather than at the first gradient, which is
    the same update (``0.9 * 0 + g = g``) but stays correct when the very first step is skipped
    (torch's fused kernel would otherwise keep an uninitialized buffer).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        coupled_weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=coupled_weight_decay, nesterov=nesterov,
                         fused=True)
        for group in self.param_groups:
            group.setdefault("decoupled_weight_decay", weight_decay)
            group.setdefault("initial_lr", group["lr"])

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        found_inf = getattr(self, "found_inf", None)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if group["momentum"]:
                for param in params:
                    state = self.state[param]
                    if state.get("momentum_buffer") is None:
                        state["momentum_buffer"] = torch.zeros_like(param)
            decay = group["decoupled_weight_decay"]
            if decay and params:
                factor: float | torch.Tensor = 1.0 - group["lr"] / group["initial_lr"] * decay
                if found_inf is not None:  # a skipped step must not decay the weights either
                    factor = torch.where(found_inf > 0, 1.0, factor)
                torch._foreach_mul_(params, factor)
        return super().step(closure)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Also checkpoints of the first release (plain foreach SGD) load: the kernel stays fused."""
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            group["fused"], group["foreach"] = True, None
