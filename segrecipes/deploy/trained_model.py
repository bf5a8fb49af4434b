"""Rebuild a trained model from a run folder or checkpoint file, for evaluation, prediction and export."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from segrecipes.config import RunConfig, build_config
from segrecipes.data.errors import DataError
from segrecipes.data.spec import RawDataset
from segrecipes.engine.checkpoint import CheckpointError, resolve_checkpoint
from segrecipes.run import build_network, validation_data


@dataclass
class TrainedModel:
    model: nn.Module
    config: RunConfig
    class_names: list[str]
    ignore_index: int
    source: Path

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def rebuild_trained_model(
    config: RunConfig, class_names: list[str], ignore_index: int, weights: dict[str, torch.Tensor],
    source: Path, device: torch.device | str = "cpu",
) -> TrainedModel:
    """Build the configured network and load ``weights`` strictly; a mismatch names the source."""
    model = build_network(config, len(class_names), pretrained=False)  # the weights are all here
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        lines = str(error).strip().splitlines()
        raise CheckpointError(f"{source}: weights do not fit {config.model.name}/{config.model.backbone}: "
                              f"{lines[1].strip() if len(lines) > 1 else lines[0]}") from None
    model.to(device).eval()
    return TrainedModel(model, config, list(class_names), ignore_index, source)


def load_trained_model(path: Path | str, device: torch.device | str = "cpu") -> TrainedModel:
    """The evaluation weights (EMA where the run used it) of a run folder's newest checkpoint or a file."""
    source, state = resolve_checkpoint(path)
    if state["config"] is None:
        raise CheckpointError(f"{source}: written by a run without a config (the Python API); load its "
                              "'eval_model' (or 'model') weights into your own network")
    data = state["data"]
    weights = state.get("eval_model") or state["model"]
    return rebuild_trained_model(build_config(state["config"], str(source)), list(data["class_names"]),
                                 int(data["ignore_index"]), weights, source, device)


def with_data_spec(config: RunConfig, spec: str | None) -> RunConfig:
    """``config`` reading its data from ``spec`` (unchanged without one): a model scored or calibrated on
    other data than it was trained on."""
    return config.model_copy(update={"data": config.data.model_copy(update={"spec": spec})}) if spec else config


def scoring_data(trained: TrainedModel, config: RunConfig, spec: str | None = None) -> tuple[RunConfig, RawDataset]:
    """``config`` with ``data.spec`` set to ``spec`` (when given) and its validation split, refused when its
    classes are not the model's."""
    config = with_data_spec(config, spec)
    val = validation_data(config)
    if val.num_classes != trained.num_classes:
        raise DataError(f"{config.data.spec}: has {val.num_classes} classes but the checkpoint "
                        f"{trained.source} was trained for {trained.num_classes}")
    return config, val
