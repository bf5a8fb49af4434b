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


def _stopped_at_step_3(cfg, run_dir) -> None:
    with pytest.raises(RunInterrupted):
        build_trainer(cfg, run_dir, extra_methods=[SignalAtStep(3)]).fit()


def test_a_run_of_release_0_2_resumes_bit_for_bit(tmp_path) -> None:
    cfg = tiny_config("train.duration=6ba", methods=("ema",))
    straight = build_trainer(cfg, tmp_path / "straight")
    straight.fit()
    _stopped_at_step_3(cfg, tmp_path / "old")
    path, state = latest_checkpoint(tmp_path / "old")
    # the config as release 0.2 saved it: the protocol size under data, no eval.size or eval.max_long_side
    saved = state["config"]
    saved["data"]["eval_size"] = saved["eval"].pop("size")
    del saved["eval"]["max_long_side"]
    torch.save(state, path)
    config, state = resumed_config(tmp_path / "old")
    assert config.eval.size == cfg.eval.size
    resumed = build_trainer(config, tmp_path / "old", resume=state)
    assert resumed.fit()["step"] == 6
    expected, actual = _weights(straight), _weights(resumed)
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=0, msg=key)


def test_build_trainer_resume_auto_continues_a_folder_or_starts_an_empty_one(tmp_path) -> None:
    cfg = tiny_config("train.duration=6ba", "schedule.name=constant")
    straight = build_trainer(cfg, tmp_path / "straight")
    straight.fit()
    _stopped_at_step_3(cfg, tmp_path / "run")
    resumed = build_trainer(cfg, tmp_path / "run", resume="auto")  # what --resume auto does, from Python
    assert resumed.clock.step == 3 and resumed.fit()["step"] == 6
    expected, actual = _weights(straight), _weights(resumed)
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=0, msg=key)
    longer = build_trainer(tiny_config("train.duration=8ba", "schedule.name=constant"), tmp_path / "run",
                           resume="auto")
    assert longer.clock.step == 6 and str(longer.clock.dur_base) == "6ba"  # extended: dur constants kept
    assert build_trainer(cfg, tmp_path / "empty", resume="auto").clock.step == 0
