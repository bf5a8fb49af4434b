"""A briefly trained tiny run (ResNet-18, synthetic data, EMA on) and its exports, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from segrecipes.config import load_config
from segrecipes.deploy import export_model, load_model
from segrecipes.engine.trained_model import TrainedModel
from segrecipes.engine.trainer import Trainer

TINY_RUN = [
    "data.spec=synthetic", "data.crop_size=32", "data.eval_size=32", "data.synthetic_image_size=32",
    "data.synthetic_train_size=8", "data.synthetic_val_size=2", "data.num_workers=0",
    "model.backbone=resnet18", "model.output_stride=16", "model.head_channels=32",
    "train.global_batch_size=4", "train.duration=2ba", "train.eval_interval=none", "train.checkpoint_interval=none",
    "train.progress=none",
    # EMA makes the evaluation weights differ from the training weights: exports must carry the former
    "ema.enabled=true", "ema.half_life=1", "ema.update_interval=1",
]  # fmt: skip


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("tiny_run")
    Trainer(load_config(overrides=TINY_RUN), run_dir).fit()
    return run_dir


@pytest.fixture(scope="session")
def tiny_model(tiny_run: Path) -> TrainedModel:
    return load_model(tiny_run)


@pytest.fixture(scope="session")
def exported(tiny_run: Path, tiny_model: TrainedModel) -> dict[str, Path]:
    """Format name -> exported file, each written and checked by :func:`export_model`."""
    suffixes = {"onnx": ".onnx", "torchscript": ".torchscript", "safetensors": ".safetensors"}
    return {
        name: export_model(tiny_model, name, tiny_run / "exports" / f"model{suffix}").path
        for name, suffix in suffixes.items()
    }
