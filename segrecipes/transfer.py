"""Carry a recipe's constants from the run they were tuned on to this run.

A preset states its constants as the reference wrote them (ADE20k: 20,210 training images, global
batch 128, the preset's epochs) and names that reference run. Two rules carry them over:

- the learning rate scales with the global batch from the reference batch: ``linear`` (Goyal et
  al.; timm's ``--lr-base`` / ``--lr-base-size``), ``sqrt`` (for adaptive optimizers) or ``none``;
- every time constant (EMA half-life and update interval, warmup) is re-expressed in ``time_unit``,
  a unit whose meaning survives the change of dataset size, batch size and duration. ``dur`` (a
  fraction of the run, the default) keeps its place in the run's trajectory whatever the budget;
  ``ep`` keeps the number of passes over the data; ``sp`` keeps the number of images. On the
  reference run itself all three give back the reference's numbers. A run with a wall-clock budget
  gets ``ep`` instead of ``dur``: methods count steps, and a share of a time budget is not a count
  of steps until the run is over.

Carried-over runs also average with the EMA warmup (``ema.warmup``), which the reference did not have.
Only constants that come from the preset (or the defaults) are carried over; a value the user
writes is taken as written.
"""

from __future__ import annotations

import math
from typing import Literal

from segrecipes.duration import Duration
from segrecipes.errors import ConfigError

LRScaling = Literal["linear", "sqrt", "none"]
TimeUnit = Literal["dur", "ep", "sp"]


def lr_factor(scaling: LRScaling, batch_size: int, reference_batch_size: int) -> float:
    """The factor that takes a learning rate tuned at ``reference_batch_size`` to ``batch_size``."""
    ratio = batch_size / reference_batch_size
    if scaling == "linear":
        return ratio
    if scaling == "sqrt":
        return math.sqrt(ratio)
    return 1.0


def reference_batches(duration: Duration, train_size: int, batch_size: int) -> float:
    """``duration`` (batches, epochs or samples) in optimizer steps of the reference run."""
    if duration.unit == "ba":
        return duration.value
    if duration.unit == "ep":
        return duration.value * (train_size // batch_size)
    if duration.unit == "sp":
        return duration.value / batch_size
    raise ConfigError(f"{duration}: only batches, epochs or samples can be carried over from the reference run")


def carry_over(constant: Duration, unit: TimeUnit, train_size: int, batch_size: int, duration: Duration) -> Duration:
    """``constant`` of the reference run (``train_size`` images, global batch ``batch_size``, lasting
    ``duration``) expressed in ``unit``. Fractions and wall-clock times already transfer: kept."""
    if constant.unit in ("dur", "s"):
        return constant
    batches = reference_batches(constant, train_size, batch_size)
    if unit == "dur":
        return Duration(batches / reference_batches(duration, train_size, batch_size), "dur")
    if unit == "ep":
        return Duration(batches / (train_size // batch_size), "ep")
    return Duration(max(1, round(batches * batch_size)), "sp")
