"""OpenVINO, ONNX INT8 and Hugging Face folder exports: each round-trips through ``predict``, carries its
metadata, and the Hub path downloads from a local stand-in for the Hub and loads from the Hub's cache offline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision.io import decode_image, write_png

from helpers.cli import run_cli
from helpers.hub_server import COMMIT, hub_server

from segrecipes.deploy import export_model, load_model
from segrecipes.deploy.hf_format import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE
from segrecipes.deploy.metadata import QUANTIZATION_KEY
from segrecipes.deploy.openvino_format import OpenVinoModel
from segrecipes.deploy.quantize import calibration_inputs
from segrecipes.deploy.trained_model import TrainedModel

openvino = pytest.importorskip("openvino", reason="the openvino extra is not installed")
huggingface_hub = pytest.importorskip("huggingface_hub", reason="the hf extra is not installed")


@pytest.fixture(scope="module")
def runtimes(tiny_run: Path, tiny_model: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """openvino, int8 and hf exports of the tiny run, each written and checked by :func:`export_model`."""
    folder = tmp_path_factory.mktemp("runtimes")
    calibration = calibration_inputs(tiny_model.config, "train", 4)
    return {
        "openvino": export_model(tiny_model, "openvino", folder / "model.xml").path,
        "int8": export_model(tiny_model, "onnx", folder / "model.int8.onnx", quantize="int8",
                             calibration=calibration).path,
        "hf": export_model(tiny_model, "hf", folder / "hf", license_name="apache-2.0").path,
    }


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("runtime_images")
    image = torch.randint(0, 256, (3, 40, 56), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    write_png(image, str(folder / "scene.png"))
    return folder


def _predicted(capsys: pytest.CaptureFixture[str], checkpoint: str | Path, images: Path, out: Path) -> torch.Tensor:
    code, _, err = run_cli(capsys, "predict", images, "--checkpoint", checkpoint, "--out", out, "--device", "cpu",
                        "--no-overlay")
    assert code == 0, err
    return decode_image(str(out / "scene.png"))


@pytest.mark.slow
def test_openvino_export_is_float32_exact_and_predicts_what_pytorch_does(runtimes, tiny_run, image_folder, tmp_path,
                                                                         capsys) -> None:
    xml = runtimes["openvino"]
    assert xml.with_suffix(".bin").is_file()
    loaded = load_model(xml)
    assert isinstance(loaded.model, OpenVinoModel) and loaded.class_names == load_model(tiny_run).class_names
    images = torch.randn(2, 3, 48, 40, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = load_model(tiny_run).model(images)
    torch.testing.assert_close(loaded.model(images), expected, rtol=0, atol=1e-4)  # float32, not bfloat16
    assert torch.equal(_predicted(capsys, xml, image_folder, tmp_path / "ov"),
                       _predicted(capsys, tiny_run, image_folder, tmp_path / "pt"))


@pytest.mark.slow
def test_int8_export_is_quantized_per_channel_and_predicts(runtimes, tiny_model, image_folder, tmp_path,
                                                          capsys) -> None:
    onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")
    proto = onnx.load(str(runtimes["int8"]))
    ops = {node.op_type for node in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # per-channel weights: a weight's scale has one entry per output channel
    scales = {init.name: onnx.numpy_helper.to_array(init) for init in proto.graph.initializer}
    assert any(name.endswith("_scale") and value.ndim == 1 and value.size > 1 for name, value in scales.items())
    props = {entry.key: entry.value for entry in proto.metadata_props}
    assert json.loads(props[QUANTIZATION_KEY])["calibration_images"] == 4
    float32_bytes = sum(tensor.numel() * 4 for tensor in tiny_model.model.state_dict().values())
    assert runtimes["int8"].stat().st_size < 0.5 * float32_bytes  # int8 weights: about a quarter of float32
    labels = _predicted(capsys, runtimes["int8"], image_folder, tmp_path / "int8")
    assert labels.shape == (1, 40, 56) and int(labels.max()) < tiny_model.num_classes


@pytest.mark.slow
def test_hf_folder_has_the_hub_layout_and_a_parseable_card(runtimes, tiny_model) -> None:
    folder = runtimes["hf"]
    assert sorted(path.name for path in folder.iterdir()) == sorted([CARD_FILE, CONFIG_FILE, WEIGHTS_FILE])
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert config["id2label"] == {str(i): name for i, name in enumerate(tiny_model.class_names)}
    assert config["normalization"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert config["segrecipes_config"]["model"]["backbone"] == "resnet18"
    card = huggingface_hub.ModelCard.load(folder / CARD_FILE)
    assert card.data.license == "apache-2.0" and card.data.library_name == "segrecipes"
    assert card.data.datasets == ["synthetic"]
    assert "background" in card.text and "Protocol: `reference` at size 32" in card.text


@pytest.mark.slow
def test_hf_folder_predicts_what_the_run_predicts(runtimes, tiny_run, image_folder, tmp_path, capsys) -> None:
    assert torch.equal(_predicted(capsys, runtimes["hf"], image_folder, tmp_path / "hf"),
                       _predicted(capsys, tiny_run, image_folder, tmp_path / "pt"))


def _hub_cache(root: Path, repo: str, folder: Path) -> Path:
    """The Hub cache layout (``models--OWNER--NAME/refs/main`` -> ``snapshots/<commit>/``) holding ``folder``."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    entry = root / f"models--{repo.replace('/', '--')}"
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text(commit)
    shutil.copytree(folder, entry / "snapshots" / commit)
    return root


@pytest.mark.slow
def test_hf_uri_loads_from_the_hub_cache_offline(runtimes, tiny_run, image_folder, tmp_path, capsys,
                                                 monkeypatch) -> None:
    cache = _hub_cache(tmp_path / "hub", "owner/tiny", runtimes["hf"])
    # a fresh process, so that huggingface_hub reads HF_HUB_OFFLINE and HF_HUB_CACHE from the environment
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "segrecipes.cli.main", "predict", str(image_folder), "--device",
                           "cpu", "--no-overlay", "--out", str(tmp_path / "hub_out"), "--checkpoint",
                           "hf://owner/tiny"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    expected = _predicted(capsys, tiny_run, image_folder, tmp_path / "pt")
    assert torch.equal(decode_image(str(tmp_path / "hub_out" / "scene.png")), expected)
    # a repository the cache lacks, offline: one line, nothing written (in this process: the constants set)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    code, _, err = run_cli(capsys, "predict", image_folder, "--checkpoint", "hf://owner/absent", "--out",
                           tmp_path / "none")
    assert code == 2
    assert err == ("error: hf://owner/absent: not in the Hugging Face cache, and downloads are off "
                   "(HF_HUB_OFFLINE) or the Hub is unreachable\n")
    assert not (tmp_path / "none").exists()


@pytest.mark.slow
def test_hf_uri_downloads_from_the_hub_into_its_cache(runtimes, tiny_run, image_folder, tmp_path, capsys) -> None:
    cache, requests = tmp_path / "hub", []
    with hub_server({"owner/tiny": runtimes["hf"]}, requests) as endpoint:
        # a fresh process, so that huggingface_hub reads HF_ENDPOINT and HF_HUB_CACHE from the environment
        env = {**{key: value for key, value in os.environ.items() if key != "HF_HUB_OFFLINE"},
               "HF_ENDPOINT": endpoint, "HF_HUB_CACHE": str(cache), "NO_PROXY": "127.0.0.1", "OMP_NUM_THREADS": "1"}

        def predict(uri: str, out: Path) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "segrecipes.cli.main", "predict", str(image_folder),
                                   "--device", "cpu", "--no-overlay", "--out", str(out), "--checkpoint", uri],
                                  env=env, capture_output=True, text=True)

        done = predict("hf://owner/tiny", tmp_path / "hub_out")
        assert done.returncode == 0, done.stderr
        refused = predict("hf://owner/absent", tmp_path / "none")
    assert torch.equal(decode_image(str(tmp_path / "hub_out" / "scene.png")),
                       _predicted(capsys, tiny_run, image_folder, tmp_path / "pt"))
    snapshot = cache / "models--owner--tiny" / "snapshots" / COMMIT
    for name in (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE):  # each file downloaded once, byte for byte
        assert (snapshot / name).read_bytes() == (runtimes["hf"] / name).read_bytes()
        assert sum(line.startswith("GET ") and line.endswith(f"/{name}") for line in requests) == 1
    assert (cache / "models--owner--tiny" / "refs" / "main").read_text() == COMMIT
    # a repository the Hub does not have: one line naming it, exit 2, nothing written
    assert refused.returncode == 2 and refused.stderr.startswith("error: hf://owner/absent: the Hub refused it (")
    assert refused.stderr.count("\n") == 1 and not (tmp_path / "none").exists()


@pytest.mark.slow
@pytest.mark.parametrize(("args", "message"), [
    (["--format", "tflite"], "--format 'tflite': unknown export format (use onnx, openvino, torchscript, "
                             "safetensors, hf)"),
    (["--format", "openvino", "--quantize", "int8"], "--quantize int8 works with --format onnx"),
    (["--format", "onnx", "--quantize", "int4"], "--quantize 'int4': unknown (use int8)"),
    (["--format", "onnx", "--license", "mit"], "--license is the model card's field: it needs --format hf"),
])
def test_bad_export_options_are_one_line_exit_2(tiny_run, capsys, args, message) -> None:
    code, _, err = run_cli(capsys, "export", "--checkpoint", tiny_run, *args)
    assert code == 2 and err.startswith(f"error: {message}") and err.count("\n") == 1


@pytest.mark.slow
@pytest.mark.parametrize(("package", "extra", "fmt", "out"), [
    ("openvino", "openvino", "openvino", "x.xml"),
    ("huggingface_hub", "hf", "hf", "x"),
])
def test_a_missing_extra_names_its_pip_install_before_writing(tiny_run, tmp_path, capsys, monkeypatch, package,
                                                              extra, fmt, out) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # what an absent package looks like to import
    code, _, err = run_cli(capsys, "export", "--checkpoint", tiny_run, "--out", tmp_path / out, "--format", fmt)
    assert code == 2
    assert err.endswith(f'needs the {package!r} package: pip install "segrecipes[{extra}]"\n') and err.count("\n") == 1
    assert not (tmp_path / out).exists()
