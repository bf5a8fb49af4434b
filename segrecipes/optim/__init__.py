"""Optimizer pieces the engine and the methods share: SGDW, the skip-on-non-finite step, LR schedules."""

from __future__ import annotations

from segrecipes.optim.param_groups import parameter_groups
from segrecipes.optim.schedule import LRSchedule, set_lr
from segrecipes.optim.sgdw import SGDW
from segrecipes.optim.step import nonfinite, optimizer_step

__all__ = ["SGDW", "LRSchedule", "nonfinite", "optimizer_step", "parameter_groups", "set_lr"]
