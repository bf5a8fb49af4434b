"""The reference optimizer: SGD with decoupled weight decay ("SGDW", SPEC §2).

Unlike ``torch.optim.SGD(weight_decay=...)``, the decay is not added to the gradient (so momentum never
sees it) and it follows the learning-rate schedule: each step does ``p *= 1 - (lr_t / lr_0) * wd``
before the usual momentum update.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from segrecipes.config import OptimizerConfig


class SGDW(torch.optim.SGD):
    """SGD whose weight decay is decoupled from the gradient and scaled by ``lr_t / lr_0``."""

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=0.0, nesterov=nesterov)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = weight_decay
            group.setdefault("initial_lr", lr)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        for group in self.param_groups:
            decay = group["decoupled_weight_decay"]
            params = [p for p in group["params"] if p.grad is not None]
            if decay and params:
                torch._foreach_mul_(params, 1.0 - group["lr"] / group["initial_lr"] * decay)
        return super().step(closure)


def build_optimizer(cfg: OptimizerConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The configured optimizer; every group records ``initial_lr`` for the schedule."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer: torch.optim.Optimizer
    if cfg.name == "sgdw":
        optimizer = SGDW(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    elif cfg.name == "sgd":
        optimizer = torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov
        )
    else:
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", cfg.lr)
    return optimizer
