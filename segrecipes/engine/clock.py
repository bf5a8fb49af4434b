"""Where a run is, in every unit at once, and what a duration or interval means for this run.

One :class:`Clock` per run, advanced only by the trainer: after each optimizer step
(:meth:`Clock.step_done`) and after each stretch of other work between steps (evaluation,
checkpoints: :meth:`Clock.other_done`). Training time includes waiting for data; wall time also
includes evaluations and checkpoints, which is what a wall-clock budget is spent on.
"""

from __future__ import annotations

import time
from typing import Any

from segrecipes.duration import Duration
from segrecipes.errors import ConfigError

STATE_KEYS = ("step", "epoch", "batch_in_epoch", "samples", "elapsed_s", "train_s")


class Clock:
    """Steps, epochs, the batch inside the epoch, samples, training and wall seconds of a run of
    ``duration``, with ``steps_per_epoch`` optimizer steps of ``samples_per_step`` samples an epoch.
    ``dur`` values are fractions of ``dur_base`` when given (an extended run keeps its constants), else
    of ``duration``."""

    def __init__(self, duration: Duration, steps_per_epoch: int, samples_per_step: int,
                 dur_base: Duration | None = None) -> None:
        if steps_per_epoch < 1:
            raise ConfigError(f"an epoch must hold at least one step, got {steps_per_epoch}")
        if duration.unit == "dur":
            raise ConfigError(f"train.duration: {duration} is a fraction of the run itself; use ba, ep, sp or time")
        self.duration = duration
        self.dur_base = dur_base or duration
        if self.dur_base.unit == "dur":
            raise ConfigError(f"train.dur_base: {self.dur_base} cannot be a fraction of the run")
        self.steps_per_epoch = steps_per_epoch
        self.samples_per_step = samples_per_step
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.samples = 0
        self.elapsed_s = 0.0
        self.train_s = 0.0
        self._mark = time.perf_counter()

    # ------------------------------------------------------------------ durations
    def resolve(self, duration: Duration) -> Duration:
        """``duration`` in this run's batches (``ba``), or in seconds when it is wall-clock time or a
        fraction of a wall-clock run. Epochs, samples and fractions round to whole steps, at least one."""
        if duration.unit in ("ba", "s"):
            return duration
        if duration.unit == "ep":
            return Duration(max(1, round(duration.value * self.steps_per_epoch)), "ba")
        if duration.unit == "sp":
            return Duration(max(1, round(duration.value / self.samples_per_step)), "ba")
        run = self.resolve(self.dur_base)
        if run.unit == "s":
            return Duration(duration.value * run.value, "s")
        return Duration(max(1, round(duration.value * run.value)), "ba")

    def steps(self, duration: Duration) -> int | None:
        """``duration`` in optimizer steps (at least one), or None when it is wall-clock time."""
        resolved = self.resolve(duration)
        return int(resolved.value) if resolved.unit == "ba" else None

    @property
    def total_steps(self) -> int | None:
        return self.steps(self.duration)

    @property
    def fraction(self) -> float:
        """The share of the run done, in [0, 1]: by steps, or by wall time for a time budget."""
        total = self.total_steps
        done = self.elapsed_s / self.duration.value if total is None else self.step / total
        return min(done, 1.0)

    @property
    def remaining_s(self) -> float | None:
        """Wall seconds left: the budget's rest, or the steps left at the wall time per step so far,
        evaluations and checkpoints included (None before the first step)."""
        total = self.total_steps
        if total is None:
            return max(0.0, self.duration.value - self.elapsed_s)
        if self.step == 0:
            return None
        return max(0, total - self.step) * self.elapsed_s / self.step

    @property
    def finished(self) -> bool:
        return self.fraction >= 1.0

    @property
    def epochs(self) -> float:
        """Epochs done, fractional."""
        return self.epoch + self.batch_in_epoch / self.steps_per_epoch

    def fraction_of_run(self, duration: Duration | None) -> float:
        """``duration`` as a share of the whole run (a warmup, say), in [0, 1]; 0 for None."""
        if duration is None:
            return 0.0
        run, part = self.resolve(self.duration), self.resolve(duration)
        if run.unit != part.unit:
            raise ConfigError(f"{duration} and the run's duration {self.duration} must both be counted in "
                              "steps (ba, ep, sp, dur) or both in time")
        return min(part.value / run.value, 1.0)

    def due(self, interval: Duration | None, since_s: float) -> bool:
        """Whether an every-``interval`` event is due after this step (time intervals: ``since_s`` is
        the wall time of its last occurrence)."""
        if interval is None:
            return False
        resolved = self.resolve(interval)
        if resolved.unit == "ba":
            return self.step % int(resolved.value) == 0
        return self.elapsed_s - since_s >= resolved.value

    # ------------------------------------------------------------------ advancing
    def restart_timer(self) -> None:
        """Start timing from now (after a pause the run should not be charged for, e.g. a resume)."""
        self._mark = time.perf_counter()

    def _lap(self) -> float:
        now = time.perf_counter()
        seconds, self._mark = now - self._mark, now
        return seconds

    def step_done(self) -> None:
        """One optimizer step finished: counts it, its samples and its time (with the wait for data)."""
        seconds = self._lap()
        self.step += 1
        self.samples += self.samples_per_step
        self.train_s += seconds
        self.elapsed_s += seconds
        self.batch_in_epoch += 1
        if self.batch_in_epoch == self.steps_per_epoch:
            self.epoch += 1
            self.batch_in_epoch = 0

    def other_done(self) -> None:
        """Work between steps finished (evaluation, checkpoint, logging): wall time only."""
        self.elapsed_s += self._lap()

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in STATE_KEYS}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in STATE_KEYS:
            setattr(self, key, type(getattr(self, key))(state[key]))
        self.restart_timer()
