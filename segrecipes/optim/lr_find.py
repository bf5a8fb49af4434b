"""The learning-rate range test's arithmetic (Smith 2015, "Cyclical Learning Rates", section 3.3): the
learning rates it steps through, the smoothed loss, when it stops and the rate it suggests.

The test trains for a few hundred steps with the learning rate growing exponentially from
``start_lr`` to ``end_lr`` and records the loss of each step. The loss is smoothed with a
bias-corrected exponential moving average (``smoothing``, fastai's 0.98), and the test stops early once
the smoothed loss exceeds ``diverge`` times its lowest value or a loss is not finite. The suggestion
(:func:`suggested_lr`) is **a tenth of the learning rate at which the smoothed loss was lowest**: the
lowest point is where the rate is already about as large as the step tolerates (past it the loss
climbs), and a tenth of it stays clear of that edge for a whole run (fastai's ``lr_min / 10``).
Driving real steps is the engine's part (:mod:`segrecipes.engine.lr_find`); this module is pure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from segrecipes.errors import ConfigError

SUGGESTION_RULE = "a tenth of the learning rate at the smoothed loss's minimum"


@dataclass(frozen=True)
class RangeTest:
    """The test's settings: ``steps`` steps from ``start_lr`` to ``end_lr`` (geometric)."""

    start_lr: float = 1e-5
    end_lr: float = 10.0
    steps: int = 200
    smoothing: float = 0.98
    diverge: float = 4.0

    def __post_init__(self) -> None:
        if not 0 < self.start_lr < self.end_lr:
            raise ConfigError(f"the range test needs 0 < start_lr < end_lr (got {self.start_lr:g} and {self.end_lr:g})")
        if self.steps < 2 or not 0 <= self.smoothing < 1 or self.diverge <= 1:
            raise ConfigError(f"the range test needs steps >= 2, 0 <= smoothing < 1 and diverge > 1 (got {self.steps}, "
                             f"{self.smoothing:g}, {self.diverge:g})")

    def lr_at(self, index: int) -> float:
        """The learning rate of step ``index`` (0-based): ``start_lr`` at the first, ``end_lr`` at the last."""
        return self.start_lr * (self.end_lr / self.start_lr) ** (index / (self.steps - 1))


@dataclass
class LRCurve:
    """What the test saw: each step's learning rate, raw and smoothed loss, and the suggestion."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    stopped_early: bool = False

    @property
    def suggestion(self) -> float:
        return suggested_lr(self.lrs, self.smoothed)

    def to_dict(self) -> dict[str, object]:
        return {"suggestion": self.suggestion, "rule": SUGGESTION_RULE, "stopped_early": self.stopped_early,
                "lr_at_min_loss": self.lrs[_lowest(self.smoothed)], "lrs": self.lrs, "losses": self.losses,
                "smoothed": self.smoothed}


def add_loss(curve: LRCurve, lr: float, loss: float, test: RangeTest) -> bool:
    """Record one step of ``curve``; True when the test should stop (diverged, or a non-finite loss)."""
    curve.lrs.append(lr)
    curve.losses.append(loss)
    if not math.isfinite(loss):
        curve.smoothed.append(math.inf)
        curve.stopped_early = True
        return True
    curve.smoothed.append(smoothed_value(curve.losses, test.smoothing))
    finite = [value for value in curve.smoothed if math.isfinite(value)]
    curve.stopped_early = curve.smoothed[-1] > test.diverge * min(finite)
    return curve.stopped_early


def smoothed_value(losses: Sequence[float], smoothing: float) -> float:
    """The bias-corrected exponential moving average of ``losses`` after the last one."""
    average = 0.0
    for loss in losses:
        average = smoothing * average + (1 - smoothing) * loss
    return average / (1 - smoothing ** len(losses))


def suggested_lr(lrs: Sequence[float], smoothed: Sequence[float]) -> float:
    """:data:`SUGGESTION_RULE` over a recorded test."""
    if not lrs:
        raise ValueError("the range test recorded no step")
    return float(f"{lrs[_lowest(smoothed)] / 10:.3g}")  # three digits: what a config file shows


def _lowest(values: Sequence[float]) -> int:
    return min(range(len(values)), key=lambda index: (values[index], index))
