"""TorchScript export (a traced module) with the model metadata as an extra file in the archive."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from segrecipes.deploy.trained_model import TrainedModel

from .errors import DeployError
from .metadata import model_metadata, read_metadata
from .tracing import TRACE_EXAMPLE_SHAPE, example_input, quiet_tracing

METADATA_FILE = "segrecipes_metadata.json"


def write_torchscript(trained: TrainedModel, path: Path) -> None:
    """Trace ``trained.model`` (on CPU, eval mode) and save it with its metadata. The tracer's own
    check is skipped: the export is checked on other input sizes instead, which it cannot do."""
    with quiet_tracing(), torch.no_grad():
        traced = torch.jit.trace(trained.model, example_input(*TRACE_EXAMPLE_SHAPE), check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={METADATA_FILE: json.dumps(model_metadata(trained))})


def _read(path: Path, device: torch.device) -> tuple[torch.jit.ScriptModule, dict[str, str]]:
    files = {METADATA_FILE: ""}
    try:
        with quiet_tracing():
            module = torch.jit.load(str(path), map_location=device, _extra_files=files)
    except RuntimeError as error:
        raise DeployError(f"{path}: not a readable TorchScript file ({str(error).splitlines()[0][:120]})") from None
    try:
        return module, json.loads(files[METADATA_FILE] or "{}")
    except ValueError:
        raise DeployError(f"{path}: unreadable segrecipes metadata in {METADATA_FILE}") from None


def add_torchscript_metadata(path: Path, extra: dict[str, str]) -> None:
    module, metadata = _read(path, torch.device("cpu"))
    with quiet_tracing():
        torch.jit.save(module, str(path), _extra_files={METADATA_FILE: json.dumps({**metadata, **extra})})


def load_torchscript_model(path: Path, device: torch.device) -> TrainedModel:
    """A ``.torchscript`` file written by :func:`write_torchscript`."""
    module, metadata = _read(path, device)
    return read_metadata(metadata, path).with_model(module.eval(), path)
