"""Wall-clock budgets end within a step and schedule over the budget; non-finite runs stop unsaved."""

from __future__ import annotations

import json

import pytest
import torch

from segrecipes.engine.checkpoint import checkpoint_candidates
from segrecipes.engine.hooks import Method
from segrecipes.engine.interrupt import TrainingDiverged
from segrecipes.engine.trainer import Trainer

from tiny_run import tiny_config


def test_time_budget_ends_within_one_step_and_cosine_spans_it(tmp_path) -> None:
    trainer = Trainer(tiny_config("train.duration=6s", "train.log_interval=1"), tmp_path / "run")
    summary = trainer.fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [row for row in rows if "loss" in row]
    assert len(steps) == summary["steps"] >= 2
    # the budget was reached by the last step and not before it
    assert steps[-2]["elapsed_s"] < 6.0 <= steps[-1]["elapsed_s"]
    lrs = [row["lr"] for row in steps]
    assert lrs[0] == pytest.approx(0.01, rel=0.05) and all(a > b for a, b in zip(lrs, lrs[1:]))  # cosine over 6 s


class PoisonImages(Method):
    """Makes every batch non-finite, as a diverging run would."""

    name = "poison"

    def transform_batch(self, images: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return images * float("nan"), target


def test_non_finite_steps_are_skipped_then_the_run_stops_without_saving(tmp_path) -> None:
    trainer = Trainer(tiny_config("train.max_bad_steps=3", "train.checkpoint_interval=1ba"), tmp_path / "run")
    before = {key: value.clone() for key, value in trainer.model.state_dict().items()}
    trainer.methods.append(PoisonImages())
    with pytest.raises(TrainingDiverged, match="3 consecutive steps with non-finite"):
        trainer.fit()
    after = trainer.model.state_dict()
    for key, value in before.items():  # weights and BatchNorm statistics untouched by the skipped steps
        if value.is_floating_point():
            assert torch.equal(after[key], value), key
    for path in checkpoint_candidates(tmp_path / "run"):  # whatever was saved is finite
        state = torch.load(path, weights_only=True)
        assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
