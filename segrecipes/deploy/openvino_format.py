"""OpenVINO IR export (``model.xml`` + ``model.bin``) and an ``nn.Module`` that runs it on the CPU.

The IR is converted from the checked ONNX graph (:mod:`segrecipes.deploy.onnx_format`), so it keeps that
graph's dynamic batch, height and width; the model metadata travels in the IR's ``rt_info``. OpenVINO's CPU
plugin computes in bfloat16 by default on CPUs that have it: the runtime here asks for float32, which is what
the export check compares against PyTorch (a user's own runtime may choose otherwise).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segrecipes.deploy.trained_model import TrainedModel

from .errors import DeployError
from .extras import require
from .metadata import model_metadata, read_metadata
from .onnx_format import write_onnx

_RT_INFO_PATH = ["segrecipes", "metadata"]  # one JSON string: the flat mapping every format stores


def _openvino() -> Any:
    return require("openvino", "openvino", "OpenVINO support")


def _save(model: Any, path: Path) -> None:
    """``model`` as ``path`` (.xml) and its .bin, in float32 (OpenVINO would halve the weights by default)."""
    openvino = _openvino()
    staged = path.with_name(f".{path.stem}.tmp-{os.getpid()}.xml")
    try:
        openvino.save_model(model, str(staged), compress_to_fp16=False)
        os.replace(staged.with_suffix(".bin"), path.with_suffix(".bin"))
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)
        staged.with_suffix(".bin").unlink(missing_ok=True)


def write_openvino(trained: TrainedModel, path: Path) -> None:
    """Convert ``trained`` (through a temporary ONNX file) into the IR ``path`` with its metadata."""
    openvino = _openvino()
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        onnx_path = Path(scratch) / "model.onnx"
        write_onnx(trained, onnx_path)
        model = openvino.convert_model(str(onnx_path))
    model.set_rt_info(json.dumps(model_metadata(trained)), _RT_INFO_PATH)
    _save(model, path)


def _read(path: Path) -> tuple[Any, dict[str, str]]:
    try:
        model = _openvino().Core().read_model(str(path))
    except RuntimeError as error:
        raise DeployError(f"{path}: not a readable OpenVINO IR ({str(error).splitlines()[0][:120]})") from None
    metadata = json.loads(model.get_rt_info(_RT_INFO_PATH).astype(str)) if model.has_rt_info(_RT_INFO_PATH) else {}
    return model, metadata


def add_openvino_metadata(path: Path, extra: dict[str, str]) -> None:
    model, metadata = _read(path)
    model.set_rt_info(json.dumps({**metadata, **extra}), _RT_INFO_PATH)
    _save(model, path)


class OpenVinoModel(nn.Module):
    """An OpenVINO IR behind the usual model call: normalized float images in, float32 logits out (on the
    images' device), computed by OpenVINO's CPU plugin in float32."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        model, self._metadata = _read(path)
        self.compiled = _openvino().Core().compile_model(  # threads as PyTorch's: speeds compare like for like
            model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": torch.get_num_threads()})

    def metadata(self) -> dict[str, str]:
        return dict(self._metadata)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.compiled(images.detach().float().cpu().numpy())[0]
        return torch.from_numpy(logits.copy()).to(images.device)


def load_openvino_model(path: Path, device: torch.device) -> TrainedModel:
    """An exported ``.xml`` IR (its ``.bin`` beside it) with the class names and config from its metadata."""
    if not path.with_suffix(".bin").is_file():
        raise DeployError(f"{path}: its weights {path.with_suffix('.bin').name} are missing beside it")
    model = OpenVinoModel(path)
    return read_metadata(model.metadata(), path).with_model(model, path)
