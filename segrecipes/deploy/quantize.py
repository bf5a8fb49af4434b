"""ONNX INT8 export: ONNX Runtime's static quantization (QDQ, per-channel int8 weights, uint8 activations with
min-max ranges), calibrated on images of the run's own training or validation split as the evaluation
protocol feeds them to the model, so the activation ranges are those the deployed model will see."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from segrecipes.config import RunConfig
from segrecipes.data.spec import build_raw_dataset
from segrecipes.deploy.trained_model import TrainedModel
from segrecipes.evaluation.evaluate import protocol_input

from .errors import DeployError
from .extras import require
from .metadata import QUANTIZATION_KEY, model_metadata
from .onnx_format import INPUT_NAME, add_onnx_metadata, write_onnx

QUANTIZE_MODES = ("int8",)
CALIBRATION_SPLITS = ("train", "val")


def calibration_inputs(config: RunConfig, split: str, count: int) -> list[torch.Tensor]:
    """The first ``count`` images of ``split`` of ``config.data.spec`` as normalized protocol inputs."""
    if split not in CALIBRATION_SPLITS:
        raise DeployError(f"--calibration-split {split!r}: use {' or '.join(CALIBRATION_SPLITS)}")
    if count < 1:
        raise DeployError(f"--calibration-images {count}: give at least 1 image")
    dataset = build_raw_dataset(config.data, split)
    return [protocol_input(dataset[index][0], config.eval) for index in range(min(count, len(dataset)))]


def _reader(inputs: Sequence[torch.Tensor]) -> object:
    quantization = require("onnxruntime.quantization", "onnx", "INT8 quantization")

    class Reader(quantization.CalibrationDataReader):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            self.feeds: Iterator[torch.Tensor] = iter(inputs)

        def get_next(self) -> dict[str, object] | None:
            images = next(self.feeds, None)
            return None if images is None else {INPUT_NAME: images.float().numpy()}

    return Reader()


def write_int8_onnx(trained: TrainedModel, path: Path, inputs: Sequence[torch.Tensor], split: str) -> None:
    """Export ``trained`` to ONNX, then quantize it into ``path`` calibrated on ``inputs`` (images of ``split``)."""
    if not inputs:
        raise DeployError("INT8 quantization: no calibration images")
    quantization = require("onnxruntime.quantization", "onnx", "INT8 quantization")
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        fp32, prepared = Path(scratch) / "fp32.onnx", Path(scratch) / "prepared.onnx"
        write_onnx(trained, fp32)
        quantization.quant_pre_process(str(fp32), str(prepared))  # shape inference and folding, as ORT advises
        root = logging.getLogger()
        level, _ = root.level, root.setLevel(logging.ERROR)  # ORT's quantizer warns once per bias on the root logger
        try:
            quantization.quantize_static(
                str(prepared), str(path), _reader(inputs), quant_format=quantization.QuantFormat.QDQ,
                per_channel=True, activation_type=quantization.QuantType.QUInt8,
                weight_type=quantization.QuantType.QInt8, calibrate_method=quantization.CalibrationMethod.MinMax,
            )
        finally:
            root.setLevel(level)
    recipe = {"mode": "int8", "method": "onnxruntime static QDQ, per-channel int8 weights, uint8 activations, min-max",
              "calibration_split": split, "calibration_images": len(inputs)}
    add_onnx_metadata(path, {**model_metadata(trained), QUANTIZATION_KEY: json.dumps(recipe)})
