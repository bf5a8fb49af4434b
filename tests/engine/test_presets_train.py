"""Every preset trains a few steps (small backbone, CPU) and evaluates the weights it should: EMA's when used."""

from __future__ import annotations

import pytest
import torch

import segrecipes.engine.trainer as trainer_module
from segrecipes.config import load_config
from segrecipes.engine.trainer import Trainer
from segrecipes.methods.ema import EMA

SMALL = [
    "model.backbone=resnet18", "model.output_stride=16", "model.head_channels=32", "model.weights=null",
    "data.crop_size=48", "data.eval_size=48", "data.num_workers=0", "train.global_batch_size=4",
    "train.duration=3ba", "train.eval_interval=none", "train.progress=none", "ema.update_interval=1",
]
PRESETS = ["baseline-unoptimized", "baseline", "mild", "medium", "hot"]


def _train_and_spy(preset: str, data: list[str], tmp_path, monkeypatch) -> tuple[Trainer, list[torch.nn.Module]]:
    evaluated: list[torch.nn.Module] = []
    real_evaluate = trainer_module.evaluate

    def spy(model, *args, **kwargs):
        evaluated.append(model)
        return real_evaluate(model, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "evaluate", spy)
    cfg = load_config(preset, overrides=[*SMALL, *data])
    with pytest.warns(UserWarning, match="sync_bn is ignored") if cfg.train.sync_bn else _nothing():
        trainer = Trainer(cfg, tmp_path / preset)
    summary = trainer.fit()
    assert summary["steps"] == 3 and 0 <= summary["miou"] <= 100
    return trainer, evaluated


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None


def _check_evaluated_weights(trainer: Trainer, evaluated: list[torch.nn.Module]) -> None:
    ema = [method for method in trainer.methods if isinstance(method, EMA)]
    assert evaluated, "the run was never evaluated"
    if ema:
        assert evaluated[-1] is ema[0].ema_model and evaluated[-1] is not trainer.model
        ema_weights = ema[0].ema_model.state_dict()
        assert any(not torch.equal(ema_weights[k], v) for k, v in trainer.model.state_dict().items()
                   if v.is_floating_point())
    else:
        assert evaluated[-1] is trainer.model


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_trains_on_synthetic(preset: str, tmp_path, monkeypatch) -> None:
    data = ["data.spec=synthetic", "data.synthetic_image_size=48", "data.synthetic_train_size=12",
            "data.synthetic_val_size=4"]
    trainer, evaluated = _train_and_spy(preset, data, tmp_path, monkeypatch)
    _check_evaluated_weights(trainer, evaluated)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_trains_on_camvid(preset: str, tmp_path, monkeypatch, camvid_root) -> None:
    trainer, evaluated = _train_and_spy(preset, [f"data.spec=camvid:{camvid_root}"], tmp_path, monkeypatch)
    _check_evaluated_weights(trainer, evaluated)
    assert trainer.data.num_classes == 11
