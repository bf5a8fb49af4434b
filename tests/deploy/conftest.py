"""A briefly trained tiny run (ResNet-18, synthetic data, EMA on) and its exports, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.tiny import tiny_config

from segrecipes.deploy import export_model, load_model
from segrecipes.deploy.trained_model import TrainedModel
from segrecipes.run import build_trainer

# EMA makes the evaluation weights differ from the training weights: exports must carry the former
TINY_RUN = ("data.synthetic_train_size=8", "data.synthetic_val_size=2", "train.duration=2ba",
            "ema.half_life=1", "ema.update_interval=1")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("tiny_run")
    build_trainer(tiny_config(*TINY_RUN, methods=("ema",)), run_dir).fit()
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
