"""Every preset trains a few steps (small backbone, CPU) and evaluates the weights it should: EMA's when used."""

from __future__ import annotations

import contextlib

import pytest
import torch
from helpers.tiny import tiny_config

from segrecipes.engine.trainer import Trainer
from segrecipes.evaluation.evaluate import evaluate
from segrecipes.methods import EMA
from segrecipes.run import build_trainer

pytestmark = pytest.mark.slow

# every preset's methods and optimizer on the tiny model; EMA updated every step so its copy moves
SMALL = ["train.duration=3ba", "ema.update_interval=1", "ema.half_life=2"]
PRESETS = ["baseline-unoptimized", "baseline", "mild", "medium", "hot"]


def _train(preset: str, data: list[str], tmp_path) -> tuple[Trainer, dict]:
    cfg = tiny_config(*SMALL, *data, recipe=preset)
    warns = pytest.warns(UserWarning, match="sync_bn is ignored") if cfg.train.sync_bn else contextlib.nullcontext()
    with warns:
        trainer = build_trainer(cfg, tmp_path / preset)
    summary = trainer.fit()
    assert summary["step"] == 3
    return trainer, summary


def _check_evaluated_weights(trainer: Trainer, summary: dict) -> None:
    """The summary's score is the evaluation of EMA's copy where the preset uses EMA, else of the model."""
    ema = [method for method in trainer.methods if isinstance(method, EMA)]
    scored = ema[0].module if ema else trainer.model
    assert trainer.eval_model() is scored
    if ema:
        weights = scored.state_dict()
        assert any(not torch.equal(weights[k], v) for k, v in trainer.model.state_dict().items()
                   if v.is_floating_point())
    metrics = evaluate(scored, trainer.val_data, trainer.inference, class_names=trainer.class_names)
    assert metrics.miou == pytest.approx(summary["miou"], abs=1e-9)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_trains_on_synthetic(preset: str, tmp_path) -> None:
    trainer, summary = _train(preset, [], tmp_path)
    _check_evaluated_weights(trainer, summary)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_trains_on_camvid(preset: str, tmp_path, camvid_root) -> None:
    trainer, summary = _train(preset, [f"data.spec=camvid:{camvid_root}"], tmp_path)
    _check_evaluated_weights(trainer, summary)
    assert len(trainer.class_names) == 11 and len(summary["iou"]) == 11
