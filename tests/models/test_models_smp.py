"""segmentation_models_pytorch networks: any input size, offline encoders, helpful errors."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import get_model

from segrecipes.models import ModelError, SMPModel


@pytest.fixture(scope="module")
def unet() -> SMPModel:
    torch.manual_seed(0)
    return SMPModel("Unet", "resnet18", num_classes=4).eval()


def test_unet_odd_size_equals_the_zero_padded_input_cropped(unet):
    images = torch.randn(1, 3, 65, 97)
    canvas = torch.zeros(1, 3, 96, 128)  # the next multiples of 32
    canvas[..., :65, :97] = images
    with torch.no_grad():
        logits = unet(images)
        expected = unet.model(canvas)[..., :65, :97]
    assert logits.shape == (1, 4, 65, 97)
    torch.testing.assert_close(logits, expected)


def test_unet_trains_on_an_odd_size():
    model = SMPModel("unet", "resnet18", num_classes=2).train()
    logits = model(torch.randn(2, 3, 33, 47))
    assert logits.shape == (2, 2, 33, 47)
    logits.mean().backward()
    grad = model.model.encoder.conv1.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_divisible_input_is_passed_through_unpadded(unet):
    images = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(unet(images), unet.model(images), rtol=0, atol=0)


def test_output_stride_reaches_deeplab_encoders_only():
    assert SMPModel("DeepLabV3Plus", "resnet18", 3, output_stride=8).pad_multiple == 8
    assert SMPModel("DeepLabV3Plus", "resnet18", 3, output_stride=16).pad_multiple == 16
    assert SMPModel("FPN", "resnet18", 3, output_stride=8).pad_multiple == 32


def test_deeplab_at_output_stride_8_pads_to_8():
    model = SMPModel("DeepLabV3Plus", "resnet18", 3, output_stride=8).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 61, 83)).shape == (1, 3, 61, 83)


def test_local_torchvision_checkpoint_loads_into_the_encoder(tmp_path):
    torch.manual_seed(7)
    state = get_model("resnet18", weights=None).state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    encoder = SMPModel("FPN", "resnet18", 3, weights=str(path)).model.encoder
    for key, tensor in encoder.state_dict().items():
        assert torch.equal(tensor, state[key]), key


def test_unknown_architecture_lists_close_names():
    with pytest.raises(ModelError, match=r"unknown smp architecture 'Unett' \(did you mean smp:Unet"):
        SMPModel("Unett", "resnet18", 3)
    with pytest.raises(ModelError, match="available: smp:Unet, smp:UnetPlusPlus"):
        SMPModel("Zebra", "resnet18", 3)


def test_unknown_or_unsuitable_encoder_is_a_model_error():
    with pytest.raises(ModelError, match="did you mean resnet18"):
        SMPModel("Unet", "resnet1", 3)
    with pytest.raises(ModelError, match="smp:DPT with encoder 'resnet18' failed"):
        SMPModel("DPT", "resnet18", 3)


def test_encoder_weights_that_do_not_fit_are_refused(tmp_path):
    path = tmp_path / "partial.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
    with pytest.raises(ModelError, match=r"partial\.pth: missing keys bn1\.weight, "):
        SMPModel("Unet", "resnet18", 3, weights=str(path))

