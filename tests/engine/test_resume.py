"""A run stopped half-way (by a signal) and resumed ends with the same weights as an uninterrupted run."""

from __future__ import annotations

import pytest
import torch

from helpers.faults import SignalAtStep
from helpers.tiny import tiny_config

from segrecipes.run import resumed_config
from segrecipes.engine.checkpoint import latest_checkpoint
from segrecipes.engine.interrupt import RunInterrupted
from segrecipes.engine.trainer import Trainer
from segrecipes.methods import EMA
from segrecipes.run import build_methods, build_trainer, run_clock

pytestmark = pytest.mark.slow


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in trainer.eval_model().state_dict().items()} | {
        f"train.{key}": value.clone() for key, value in trainer.model.state_dict().items()
    }


@pytest.mark.parametrize("methods", [(), ("ema", "mixup", "sam", "channels_last")], ids=["plain", "all-methods"])
def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path, methods) -> None:
    cfg = tiny_config("train.duration=6ba", "sam.interval=2", "ema.update_interval=2", "ema.half_life=4",
                      methods=methods)
    straight = build_trainer(cfg, tmp_path / "straight")
    straight.fit()
    expected = _weights(straight)

    interrupted = build_trainer(cfg, tmp_path / "stopped", extra_methods=[SignalAtStep(3)])
    with pytest.raises(RunInterrupted, match="segrecipes train --resume"):
        interrupted.fit()
    path, state = latest_checkpoint(tmp_path / "stopped")
    assert state["clock"]["step"] == 3 and path.name == "last.pt"

    resumed = build_trainer(cfg, tmp_path / "stopped", resume=state)
    summary = resumed.fit()
    assert summary["step"] == 6
    actual = _weights(resumed)
    assert expected.keys() == actual.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=0, msg=key)


def test_constant_lr_run_can_be_extended(tmp_path) -> None:
    build_trainer(tiny_config("train.duration=2ba", "schedule.name=constant"), tmp_path / "run").fit()
    _, state = latest_checkpoint(tmp_path / "run")
    longer = tiny_config("train.duration=4ba", "schedule.name=constant")
    summary = build_trainer(longer, tmp_path / "run", resume=state).fit()
    assert summary["step"] == 4 and state["clock"]["step"] == 2


def test_an_extended_run_keeps_its_fractional_constants_in_the_batches_they_meant(tmp_path) -> None:
    first = tiny_config("train.duration=8ba", "schedule.name=constant", "ema.enabled=true", "ema.half_life=0.5dur",
                        "ema.update_interval=0.25dur", "train.checkpoint_interval=0.5dur")
    build_trainer(first, tmp_path / "run").fit()
    config, state = resumed_config(tmp_path / "run", ["train.duration=16ba"])
    assert config.train.duration.value == 16 and str(config.train.dur_base) == "8ba"
    (ema,) = build_methods(config, 6, 255, run_clock(config, 16))
    assert isinstance(ema, EMA) and ema.update_interval == 2 and ema.smoothing == 2.0 ** (-2 / 4)  # as in the 8ba run
    summary = build_trainer(config, tmp_path / "run", resume=state).fit()
    assert summary["step"] == 16
    same, _ = resumed_config(tmp_path / "run", [])
    assert same.train.dur_base is not None and str(same.train.dur_base) == "8ba"  # kept on the next resume
