"""ONNX export with dynamic batch, height and width, and an ``nn.Module`` that runs the file.

Exporter: the TorchScript-based one (``torch.onnx.export(..., dynamo=False)``). In torch 2.14 the
default dynamo exporter needs the ``onnxscript`` package, which segrecipes does not depend on;
the TorchScript-based exporter needs only ``onnx``, runs reliably on CPU, and records this
model's shape arithmetic (interpolation to the input size, smp's padding) as graph operations,
so one file serves every input size. Every export is checked against PyTorch afterwards.

Opset 17: the graph uses only operators stable since opset 13 (``Conv``, half-pixel bilinear
``Resize``, ``GlobalAveragePool``, ``Pad``, shape arithmetic), and 17 rather than the exporter's
default 20 lets runtimes already deployed in production (ONNX Runtime >= 1.12, TensorRT 8.6) load it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from segrecipes.deploy.trained_model import TrainedModel

from .errors import DeployError
from .extras import require
from .metadata import model_metadata, read_metadata
from .tracing import TRACE_EXAMPLE_SHAPE, example_input, quiet_tracing

ONNX_OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "logits"
_DYNAMIC_AXES = {0: "batch", 2: "height", 3: "width"}


def write_onnx(trained: TrainedModel, path: Path) -> None:
    """Trace ``trained.model`` (on CPU, eval mode) into ``path`` and store the model metadata as
    ONNX metadata props."""
    require("onnx", "onnx", "ONNX support")  # torch.onnx.export writes through it
    with quiet_tracing(), torch.no_grad():
        torch.onnx.export(
            trained.model,
            (example_input(*TRACE_EXAMPLE_SHAPE),),
            str(path),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: _DYNAMIC_AXES, OUTPUT_NAME: _DYNAMIC_AXES},
        )
    add_onnx_metadata(path, model_metadata(trained))


def add_onnx_metadata(path: Path, extra: dict[str, str]) -> None:
    """``extra`` into the ONNX file's metadata props (kept keys are overwritten by ``extra``'s)."""
    onnx = require("onnx", "onnx", "ONNX support")
    proto = onnx.load(str(path))
    props = {entry.key: entry.value for entry in proto.metadata_props}
    onnx.helper.set_model_props(proto, {**props, **extra})
    onnx.save(proto, str(path))


class OnnxRuntimeModel(nn.Module):
    """An ONNX file behind the usual model call: normalized float images in, float32 logits out
    (on the images' device), computed by ONNX Runtime."""

    def __init__(self, path: Path, device: torch.device) -> None:
        super().__init__()
        runtime = require("onnxruntime", "onnx", "ONNX support")
        wanted = ["CUDAExecutionProvider"] if device.type == "cuda" else []
        providers = [p for p in wanted if p in runtime.get_available_providers()] + ["CPUExecutionProvider"]
        options = runtime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # as many as PyTorch: speeds compare like for like
        try:
            self.session = runtime.InferenceSession(str(path), options, providers=providers)
        except Exception as error:  # onnxruntime raises its own exception types for bad files
            raise DeployError(f"{path}: not a readable ONNX model ({type(error).__name__})") from None
        self.input_name = self.session.get_inputs()[0].name

    def metadata(self) -> dict[str, str]:
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.session.run(None, {self.input_name: images.detach().float().cpu().numpy()})[0]
        return torch.from_numpy(logits).to(images.device)


def load_onnx_model(path: Path, device: torch.device) -> TrainedModel:
    """An exported ``.onnx`` file with the class names and config from its metadata."""
    model = OnnxRuntimeModel(path, device)
    return read_metadata(model.metadata(), path).with_model(model, path)
