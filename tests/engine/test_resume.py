"""A run stopped half-way (by a signal) and resumed ends with the same weights as an uninterrupted run."""

from __future__ import annotations

import signal

import pytest
import torch
from torch import nn

from segrecipes.engine.checkpoint import latest_checkpoint
from segrecipes.engine.hooks import Method
from segrecipes.engine.interrupt import RunInterrupted
from segrecipes.engine.trainer import Trainer

from tiny_run import tiny_config


class SignalAtStep(Method):
    """Sends SIGTERM to this process after a given step, as a scheduler's preemption would."""

    name = "signal_at_step"

    def __init__(self, step: int) -> None:
        self.step = step

    def after_step(self, model: nn.Module, step: int) -> None:
        if step == self.step:
            signal.raise_signal(signal.SIGTERM)


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in trainer.eval_model().state_dict().items()} | {
        f"train.{key}": value.clone() for key, value in trainer.model.state_dict().items()
    }


@pytest.mark.parametrize("methods", [(), ("ema", "mixup", "sam", "channels_last")], ids=["plain", "all-methods"])
def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path, methods) -> None:
    cfg = tiny_config("train.duration=6ba", "sam.interval=2", "ema.update_interval=2", "ema.half_life=4",
                      methods=methods)
    straight = Trainer(cfg, tmp_path / "straight")
    straight.fit()
    expected = _weights(straight)

    interrupted = Trainer(cfg, tmp_path / "stopped")
    interrupted.methods.append(SignalAtStep(3))
    with pytest.raises(RunInterrupted, match="segrecipes train --resume"):
        interrupted.fit()
    path, state = latest_checkpoint(tmp_path / "stopped")
    assert state["progress"]["step"] == 3 and path.name == "last.pt"

    resumed = Trainer(cfg, tmp_path / "stopped", resume_state=state)
    summary = resumed.fit()
    assert summary["steps"] == 6
    actual = _weights(resumed)
    assert expected.keys() == actual.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=0, msg=key)


def test_constant_lr_run_can_be_extended(tmp_path) -> None:
    cfg = tiny_config("train.duration=2ba", "schedule.name=constant")
    Trainer(cfg, tmp_path / "run").fit()
    _, state = latest_checkpoint(tmp_path / "run")
    longer = tiny_config("train.duration=4ba", "schedule.name=constant")
    summary = Trainer(longer, tmp_path / "run", resume_state=state).fit()
    assert summary["steps"] == 4
