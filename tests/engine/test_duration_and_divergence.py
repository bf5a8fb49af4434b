"""Wall-clock budgets end within a step and schedule over the budget; non-finite runs stop unsaved."""

from __future__ import annotations

import json

import pytest
import torch

from helpers.tiny import tiny_config

from segrecipes.engine.checkpoint import checkpoint_candidates
from segrecipes.engine.interrupt import TrainingDiverged
from segrecipes.methods import Method, StepContext
from segrecipes.run import build_trainer

pytestmark = pytest.mark.slow


def test_time_budget_ends_within_one_step_and_cosine_spans_it(tmp_path) -> None:
    trainer = build_trainer(tiny_config("train.duration=6s", "train.log_interval=1"), tmp_path / "run")
    summary = trainer.fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [row for row in rows if "loss" in row]
    assert len(steps) == summary["step"] >= 2
    # the budget was reached by the last step and not before it
    assert steps[-2]["elapsed_s"] < 6.0 <= steps[-1]["elapsed_s"]
    lrs = [row["lr"] for row in steps]
    assert lrs[0] == pytest.approx(0.01, rel=0.05) and all(a > b for a, b in zip(lrs, lrs[1:]))  # cosine over 6 s


class PoisonImages(Method):
    """Makes every batch from step ``start`` on non-finite, as a diverging run would."""

    name = "poison"

    def __init__(self, start: int = 1) -> None:
        self.start = start

    def transform_batch(self, context: StepContext, images: torch.Tensor, target: torch.Tensor):
        return (images * float("nan"), target) if context.step >= self.start else (images, target)


def test_non_finite_steps_are_skipped_then_the_run_stops_without_saving(tmp_path) -> None:
    cfg = tiny_config("train.max_bad_steps=3", "train.checkpoint_interval=1ba", "train.log_interval=1")
    trainer = build_trainer(cfg, tmp_path / "run", extra_methods=[PoisonImages(start=3)])
    with pytest.raises(TrainingDiverged, match="3 consecutive steps with non-finite"):
        trainer.fit()
    assert trainer.clock.step == 5  # steps 3, 4, 5 skipped; the third one ends the run
    saved = {path.name: torch.load(path, weights_only=True) for path in checkpoint_candidates(tmp_path / "run")}
    assert saved["last.pt"]["clock"]["step"] == 4  # saved after steps 1..4; step 5's checkpoint never came
    after = trainer.model.state_dict()
    for state in saved.values():  # steps 3 and 4 were skipped: every checkpoint holds the weights after step 2
        for key, value in state["model"].items():  # ... and so do the model's weights and BatchNorm statistics
            if value.is_floating_point():
                assert torch.isfinite(value).all() and torch.equal(after[key], value), key
