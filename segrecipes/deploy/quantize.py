"""ONNX INT8 export: ONNX Runtime's static quantization of the convolutions (QDQ, per-channel int8 weights, uint8
activations), calibrated on images of the run's own training or validation split as the evaluation protocol feeds
them to the model, so the activation ranges are those the deployed model will see."""

from __future__ import annotations

import contextlib
import io
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
# Where the compute and the weights are. Padding, resizing and concatenation stay float32: quantized, ORT 1.32
# fuses them into QLinearConcat nodes that break smp's padding of sizes that are no multiple of the stride.
QUANTIZED_OPS = ("Conv", "MatMul")
CALIBRATION_SPLITS = ("train", "val")
# activation ranges: a histogram's 99.999th percentile (the default: on the CamVid model of BENCHMARKS.md it kept
# mIoU, +0.12, where min/max lost 0.80) or the observed min/max (ORT's names)
CALIBRATION_METHODS = {"percentile": "Percentile", "minmax": "MinMax"}


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


def check_calibration_method(method: str) -> str:
    if method not in CALIBRATION_METHODS:
        raise DeployError(f"--calibration-method {method!r}: use {', '.join(CALIBRATION_METHODS)}")
    return method


def write_int8_onnx(trained: TrainedModel, path: Path, inputs: Sequence[torch.Tensor], split: str,
                    method: str = "percentile") -> None:
    """Export ``trained`` to ONNX, then quantize it into ``path`` calibrated on ``inputs`` (images of ``split``)
    with the activation ranges of ``method``."""
    check_calibration_method(method)
    if not inputs:
        raise DeployError("INT8 quantization: no calibration images")
    quantization = require("onnxruntime.quantization", "onnx", "INT8 quantization")
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        fp32, prepared = Path(scratch) / "fp32.onnx", Path(scratch) / "prepared.onnx"
        write_onnx(trained, fp32)
        # ONNX shape inference and graph folding, as ORT advises (its symbolic shape inference cannot follow smp's
        # padding arithmetic on dynamic sizes, and the quantizer does not need it)
        quantization.quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        root = logging.getLogger()
        level, _ = root.level, root.setLevel(logging.ERROR)  # ORT's quantizer warns once per bias on the root logger
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # and prints the progress of its histograms
                quantization.quantize_static(
                    str(prepared), str(path), _reader(inputs), quant_format=quantization.QuantFormat.QDQ,
                    op_types_to_quantize=list(QUANTIZED_OPS), per_channel=True,
                    activation_type=quantization.QuantType.QUInt8, weight_type=quantization.QuantType.QInt8,
                    calibrate_method=getattr(quantization.CalibrationMethod, CALIBRATION_METHODS[method]),
                )
        finally:
            root.setLevel(level)
    recipe = {"mode": "int8", "ops": list(QUANTIZED_OPS),
              "method": f"onnxruntime static QDQ, per-channel int8 weights, uint8 activations, {method} ranges",
              "calibration_split": split, "calibration_images": len(inputs)}
    add_onnx_metadata(path, {**model_metadata(trained), QUANTIZATION_KEY: json.dumps(recipe)})
