"""Learning-rate schedules as a function of the fraction of the run done, in [0, 1].

The fraction is steps done / total steps, or elapsed / budget for a wall-clock duration, so a
time-budgeted run's schedule spans exactly its budget. The only state is that fraction, which the
checkpoint already holds, so resuming needs no scheduler state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from segrecipes.errors import ConfigError

ScheduleName = Literal["cosine", "poly", "constant"]


@dataclass(frozen=True)
class LRSchedule:
    """``schedule(fraction)`` is the multiplier of the base learning rate: a linear warmup over the
    first ``warmup`` of the run, then ``name`` (cosine or poly from 1 down to ``final_lr_ratio``, or
    constant) over the rest."""

    name: ScheduleName = "constant"
    warmup: float = 0.0
    power: float = 0.9
    final_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in ("cosine", "poly", "constant"):
            raise ConfigError(f"schedule.name: unknown schedule {self.name!r} (use cosine, poly or constant)")
        if not 0.0 <= self.warmup <= 1.0:
            raise ConfigError(f"schedule.warmup: must be a fraction of the run in [0, 1], got {self.warmup}")

    def __call__(self, fraction: float) -> float:
        fraction = min(max(fraction, 0.0), 1.0)
        if self.warmup > 0 and fraction < self.warmup:
            return fraction / self.warmup
        if self.warmup > 0:
            fraction = (fraction - self.warmup) / (1.0 - self.warmup) if self.warmup < 1 else 1.0
        floor = self.final_lr_ratio
        if self.name == "constant":
            return 1.0
        if self.name == "cosine":
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * fraction))
        return floor + (1.0 - floor) * (1.0 - fraction) ** self.power


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Every group's learning rate to ``factor`` times its ``initial_lr`` (recorded when unset)."""
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
        group["lr"] = group["initial_lr"] * factor
