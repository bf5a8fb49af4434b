"""Exports compute what the PyTorch model computes, carry what is needed to use them, and are checked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from safetensors import safe_open
from torch import nn

from segrecipes.cli.main import main
from segrecipes.deploy import DeployError, ExportReport, export_model, load_exported_safetensors, load_model
from segrecipes.deploy.onnx_format import OnnxRuntimeModel
from segrecipes.engine.checkpoint import latest_checkpoint
from segrecipes.deploy.trained_model import TrainedModel

SIZES = [(1, 64, 80), (2, 96, 72)]  # (batch, height, width), neither the traced size


def _images(batch: int, height: int, width: int) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(height * width))


def _eager(model: TrainedModel, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.model.eval()(images)


@pytest.mark.slow
@pytest.mark.parametrize("shape", SIZES, ids=lambda s: "x".join(map(str, s)))
def test_deploy_onnx_matches_pytorch_on_other_sizes(exported, tiny_model, shape) -> None:
    session = onnxruntime.InferenceSession(str(exported["onnx"]), providers=["CPUExecutionProvider"])
    images = _images(*shape)
    logits = session.run(None, {"images": images.numpy()})[0]
    expected = _eager(tiny_model, images).numpy()
    assert logits.shape == (shape[0], tiny_model.num_classes, shape[1], shape[2])
    assert np.abs(logits - expected).max() <= 1e-4


@pytest.mark.slow
def test_deploy_onnx_graph_is_dynamic_and_carries_metadata(exported, tiny_model) -> None:
    proto = onnx.load(str(exported["onnx"]))
    dims = [dim.dim_param or dim.dim_value for dim in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    assert {entry.domain: entry.version for entry in proto.opset_import}[""] == 17
    props = {entry.key: entry.value for entry in proto.metadata_props}
    assert json.loads(props["segrecipes.class_names"]) == tiny_model.class_names
    assert json.loads(props["segrecipes.normalization.mean"]) == pytest.approx([0.485, 0.456, 0.406])
    assert json.loads(props["segrecipes.normalization.std"]) == pytest.approx([0.229, 0.224, 0.225])
    assert json.loads(props["segrecipes.config"])["model"]["backbone"] == "resnet18"


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.slow
def test_deploy_torchscript_equals_eager(exported, tiny_model) -> None:
    module = torch.jit.load(str(exported["torchscript"]))
    for shape in SIZES:
        images = _images(*shape)
        with torch.no_grad():
            torch.testing.assert_close(module(images), _eager(tiny_model, images), rtol=0, atol=1e-6)


@pytest.mark.slow
def test_deploy_safetensors_rebuilds_the_ema_model_exactly(exported, tiny_run, tiny_model) -> None:
    _, state = latest_checkpoint(tiny_run)
    with safe_open(str(exported["safetensors"]), framework="pt") as handle:
        stored = {name: handle.get_tensor(name) for name in handle.keys()}
        metadata = handle.metadata()
    # the evaluation (EMA) weights, which differ from the training weights after two steps
    assert stored.keys() == state["eval_model"].keys()
    assert all(torch.equal(stored[name], state["eval_model"][name]) for name in stored)
    assert any(not torch.equal(stored[name], state["model"][name]) for name in stored)
    assert json.loads(metadata["segrecipes.config"]) == state["config"]

    rebuilt = load_exported_safetensors(exported["safetensors"])
    assert rebuilt.class_names == tiny_model.class_names and rebuilt.ignore_index == tiny_model.ignore_index
    assert type(rebuilt.model) is type(tiny_model.model)
    for shape in SIZES:
        images = _images(*shape)
        assert torch.equal(_eager(rebuilt, images), _eager(tiny_model, images))


@pytest.mark.slow
def test_deploy_load_model_dispatches_on_suffix(exported, tiny_run, tmp_path) -> None:
    assert isinstance(load_model(exported["onnx"]).model, OnnxRuntimeModel)
    assert isinstance(load_model(exported["torchscript"]).model, torch.jit.ScriptModule)
    assert load_model(exported["safetensors"]).config == load_model(tiny_run).config
    with pytest.raises(DeployError, match="missing.onnx: model file not found"):
        load_model(tmp_path / "missing.onnx")
    foreign = tmp_path / "foreign.safetensors"
    foreign.write_bytes(exported["safetensors"].read_bytes()[:100])
    with pytest.raises(DeployError, match="foreign.safetensors: not a readable safetensors file"):
        load_model(foreign)


class _WidthBranch(nn.Module):
    """Adds 1 to wide inputs only: a Python branch that tracing freezes at the traced width."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images[:, :2] + 1 if images.shape[-1] > 70 else images[:, :2]


@pytest.mark.slow
def test_deploy_export_check_catches_a_frozen_branch(tiny_model, tmp_path: Path) -> None:
    branchy = TrainedModel(_WidthBranch(), tiny_model.config, ["a", "b"], 255, tmp_path)
    # traced at width 76 (> 70), checked at widths 32 and 43: the traced file always adds 1
    with pytest.raises(DeployError, match=r"differs from PyTorch by 1\.00e\+00"):
        export_model(branchy, "torchscript", tmp_path / "branchy.torchscript")
    report = export_model(branchy, "torchscript", tmp_path / "wide.torchscript", shapes=[(1, 8, 80), (2, 9, 90)])
    assert report.max_abs_diff == {(1, 8, 80): 0.0, (2, 9, 90): 0.0}


@pytest.mark.slow
def test_deploy_export_refuses_unknown_format_and_wrong_suffix(tiny_model, tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="--format 'tflite': unknown export format"):
        export_model(tiny_model, "tflite", tmp_path / "model.tflite")
    with pytest.raises(DeployError, match=r"model\.pt: a torchscript export must end in \.torchscript"):
        export_model(tiny_model, "torchscript", tmp_path / "model.pt")


def _cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.mark.slow
def test_deploy_export_cli_prints_the_check_and_writes_next_to_the_run(tiny_run, capsys) -> None:
    code, out, _ = _cli(capsys, "export", "--checkpoint", tiny_run, "--format", "safetensors")
    assert code == 0
    assert (tiny_run / "model.safetensors").is_file()
    # the run's eval size is 32: a 32 x 43 image and a batch of two 43 x 32 ones
    assert "max abs difference vs PyTorch on 1x3x32x43: 0.00e+00" in out
    assert "max abs difference vs PyTorch on 2x3x43x32: 0.00e+00" in out


@pytest.mark.slow
def test_deploy_export_cli_refuses_a_compiled_model_in_one_line(exported, capsys) -> None:
    code, _, err = _cli(capsys, "export", "--checkpoint", exported["onnx"], "--format", "torchscript")
    assert code == 2
    assert err == f"error: {exported['onnx']}: export needs PyTorch weights (a run folder, checkpoint or .safetensors file)\n"


def test_deploy_export_tolerance_is_absolute_for_small_logits_relative_for_large() -> None:
    def report(largest_logit: float) -> ExportReport:
        return ExportReport(Path("m.onnx"), "onnx", {(1, 8, 8): 0.0}, largest_logit)

    assert report(0.3).tolerance == pytest.approx(1e-4)
    assert report(1.0).tolerance == pytest.approx(1e-4)
    assert report(250.0).tolerance == pytest.approx(2.5e-2)
