"""Input channels other than RGB, and smp encoders' own weights (smp names, timm tags, raw timm files)."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import pytest
import segmentation_models_pytorch as smp
import timm
import torch
from safetensors.torch import save_file
from timm.models import adapt_input_conv
from torchvision.models import get_model

from segrecipes.models.settings import ModelSettings
from segrecipes.models import DeepLabV3Plus, ModelError, ResNetBackbone, SMPModel, build_model


@pytest.fixture(scope="module")
def rgb_resnet18(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A random torchvision ResNet-18 checkpoint (3 input channels) on disk."""
    torch.manual_seed(5)
    state = get_model("resnet18", weights=None).state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(state, path)
    return path, state


def test_four_channel_deeplab_and_unet_give_logits_at_the_input_size():
    images = torch.randn(2, 4, 37, 45)
    deeplab = DeepLabV3Plus("resnet18", num_classes=3, output_stride=16, head_channels=16, in_channels=4).eval()
    unet = build_model(ModelSettings(name="smp:Unet", backbone="resnet18"), num_classes=3, in_channels=4).eval()
    with torch.no_grad():
        assert deeplab(images).shape == unet(images).shape == (2, 3, 37, 45)
    assert deeplab.backbone.conv1.weight.shape == (64, 4, 7, 7)


def test_rgb_weights_are_adapted_to_four_channels_as_timm_does(rgb_resnet18):
    path, state = rgb_resnet18
    backbone = ResNetBackbone("resnet18", 16, weights=str(path), in_channels=4)
    assert torch.equal(backbone.conv1.weight, adapt_input_conv(4, state["conv1.weight"]))
    assert torch.equal(backbone.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])
    encoder = SMPModel("Unet", "resnet18", 2, weights=str(path), in_channels=4).model.encoder
    assert torch.equal(encoder.conv1.weight, adapt_input_conv(4, state["conv1.weight"]))


def test_only_the_input_dimension_of_the_first_conv_is_adapted(tmp_path, rgb_resnet18):
    _, state = rgb_resnet18
    path = tmp_path / "wide.pth"
    torch.save({**state, "conv1.weight": torch.zeros(32, 3, 7, 7)}, path)
    with pytest.raises(ModelError, match="shape mismatch for conv1.weight"):
        ResNetBackbone("resnet18", weights=str(path), in_channels=4)


@pytest.mark.parametrize("in_channels", [3, 4])
def test_a_raw_timm_checkpoint_is_loaded_by_timm_into_a_tu_encoder(tmp_path, in_channels):
    torch.manual_seed(11)
    state = timm.create_model("resnet18", pretrained=False).state_dict()
    path = tmp_path / "timm_resnet18.pth"
    torch.save(state, path)
    model = SMPModel("Unet", "tu-resnet18", 2, weights=str(path), in_channels=in_channels)
    loaded = model.model.encoder.model.state_dict()
    assert torch.equal(loaded["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])
    assert torch.equal(loaded["conv1.weight"], adapt_input_conv(in_channels, state["conv1.weight"]))
    assert model(torch.randn(1, in_channels, 40, 40)).shape == (1, 2, 40, 40)


def test_a_missing_timm_file_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="file not found"):
        SMPModel("Unet", "tu-resnet18", 2, weights=str(tmp_path / "absent.pth"))


def test_an_smp_weights_name_goes_through_smps_own_loading(tmp_path, monkeypatch):
    torch.manual_seed(3)
    published = smp.Unet("resnet18", encoder_weights=None).encoder.state_dict()
    save_file({k: v.contiguous() for k, v in published.items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text("{}")
    asked = []

    def hub_download(repo_id: str, filename: str, revision: str | None = None) -> str:
        asked.append((repo_id, filename))
        return str(tmp_path / filename)

    monkeypatch.setattr(smp.encoders, "hf_hub_download", hub_download)
    encoder = SMPModel("FPN", "resnet18", 2, weights="imagenet").model.encoder
    assert ("smp-hub/resnet18.imagenet", "model.safetensors") in asked
    assert torch.equal(encoder.layer3[0].conv1.weight, published["layer3.0.conv1.weight"])


@pytest.mark.parametrize(("encoder", "weights", "repo"), [
    ("resnet18", "imagenet", "smp-hub/resnet18.imagenet"),
    ("tu-resnet18", "a1_in1k", "timm/resnet18.a1_in1k"),
])
def test_hub_weights_missing_offline_name_the_file(tmp_path, monkeypatch, encoder, weights, repo):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(ModelError) as error:
        SMPModel("Unet", encoder, 2, weights=weights)
    message = str(error.value)
    assert f"model.safetensors of the Hugging Face repo {repo} is not in {tmp_path / 'hf'}" in message
    assert "\n" not in message


def test_an_unknown_smp_weights_name_is_a_model_error():
    with pytest.raises(ModelError, match="Wrong pretrained weights `nosuch`"):
        SMPModel("Unet", "resnet18", 2, weights="nosuch")
