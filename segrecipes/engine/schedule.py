"""Learning-rate schedules as a function of training progress in [0, 1].

Progress is steps done / total steps, or elapsed / budget for a wall-clock duration, so a
time-budgeted run's schedule spans exactly its budget. The state is just the progress, which the
checkpoint already holds, so resuming needs no scheduler state.
"""

from __future__ import annotations

import math

import torch

from segrecipes.config import ScheduleConfig


def lr_factor(cfg: ScheduleConfig, progress: float, warmup_progress: float = 0.0) -> float:
    """Multiplier of the base learning rate at ``progress`` (linear warmup, then the schedule)."""
    progress = min(max(progress, 0.0), 1.0)
    if warmup_progress > 0 and progress < warmup_progress:
        return progress / warmup_progress
    if warmup_progress > 0:
        progress = (progress - warmup_progress) / (1.0 - warmup_progress) if warmup_progress < 1 else 1.0
    floor = cfg.final_lr_ratio
    if cfg.name == "constant":
        return 1.0
    if cfg.name == "cosine":
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return floor + (1.0 - floor) * (1.0 - progress) ** cfg.power


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor
