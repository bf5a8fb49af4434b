"""Rebuild a trained model from a run folder or checkpoint file, for evaluation, prediction and export."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from segrecipes.config import RunConfig, build_config
from segrecipes.engine.checkpoint import CheckpointError, resolve_checkpoint
from segrecipes.models.factory import build_model


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


def load_trained_model(path: Path | str, device: torch.device | str = "cpu") -> TrainedModel:
    """The evaluation weights (EMA where the run used it) of a run folder's newest checkpoint or a file."""
    source, state = resolve_checkpoint(path)
    config = build_config(state["config"], str(source))
    data = state["data"]
    # the checkpoint carries every weight: never look for backbone weights again
    model_config = config.model.model_copy(update={"weights": None})
    model = build_model(model_config, int(data["num_classes"]))
    weights = state.get("eval_model") or state["model"]
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        raise CheckpointError(f"{source}: weights do not fit {config.model.name}/{config.model.backbone}: "
                              f"{first[1].strip() if len(first) > 1 else first[0]}") from None
    model.to(device).eval()
    return TrainedModel(model, config, list(data["class_names"]), int(data["ignore_index"]), source)
