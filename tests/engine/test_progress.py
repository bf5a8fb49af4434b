"""The ETA counts everything a run spends its wall time on (evaluations, checkpoints), not only steps."""

from __future__ import annotations

import pytest

from segrecipes.duration import Duration
from segrecipes.engine.clock import Clock
from segrecipes.engine.progress import ProgressBar, format_seconds


def test_remaining_time_extrapolates_the_wall_time_per_step_with_evaluations_included() -> None:
    clock = Clock(Duration(100, "ba"), steps_per_epoch=10, samples_per_step=8)
    assert clock.remaining_s is None
    clock.step, clock.train_s, clock.elapsed_s = 20, 30.0, 50.0  # 20 s of the 50 were evaluations
    assert clock.remaining_s == pytest.approx(80 * 50.0 / 20)  # 200 s, not 80 * 1.5 = 120 s
    clock.step = 100
    assert clock.remaining_s == 0


def test_remaining_time_of_a_wall_clock_budget_is_its_rest() -> None:
    clock = Clock(Duration(600, "s"), steps_per_epoch=10, samples_per_step=8)
    clock.elapsed_s = 450.0
    assert clock.remaining_s == pytest.approx(150.0)
    clock.elapsed_s = 700.0
    assert clock.remaining_s == 0


def test_plain_progress_lines_carry_the_eta(capsys) -> None:
    bar = ProgressBar(100, "steps", "plain", enabled=True)
    bar.update(20, "loss 1.0", 3725.0)
    bar.update(21, "loss 0.9")
    assert capsys.readouterr().out.splitlines() == ["[20 steps] loss 1.0 ETA 1:02:05", "[21 steps] loss 0.9"]
    assert format_seconds(65) == "1:05"
