"""Backbone weights: local files round-trip exactly, the hub cache is read (offline: never downloaded into)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torchvision.models import get_model

from segrecipes.models import DeepLabV3Plus, ModelError, ResNetBackbone

# torchvision's published file names (the basename of each weights URL).
RESNET18_V1_FILE = "resnet18-f37072fd.pth"
RESNET50_V2_FILE = "resnet50-11ad3fa6.pth"


@pytest.fixture(scope="module")
def resnet18_state() -> dict[str, torch.Tensor]:
    """A random torchvision ResNet-18 checkpoint, classifier included, unlike a fresh backbone's init."""
    torch.manual_seed(123)
    return get_model("resnet18", weights=None).state_dict()


@pytest.fixture
def hub_dir(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache, with every download path made to fail loudly."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    monkeypatch.setenv("SEGRECIPES_OFFLINE", "1")  # downloads are tested in test_weights_download.py

    def no_download(*args, **kwargs):
        raise AssertionError("attempted a download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    return hub


def _assert_backbone_holds(backbone: ResNetBackbone, state: dict[str, torch.Tensor]) -> None:
    loaded = backbone.state_dict()
    expected = {k: v for k, v in state.items() if not k.startswith("fc.")}
    assert loaded.keys() == expected.keys()
    for key, tensor in expected.items():
        assert torch.equal(loaded[key], tensor), key


def test_pth_round_trips_exactly(tmp_path, resnet18_state):
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18_state, path)
    _assert_backbone_holds(ResNetBackbone("resnet18", 8, weights=str(path)), resnet18_state)


def test_safetensors_round_trips_exactly_into_the_full_model(tmp_path, resnet18_state):
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in resnet18_state.items()}, str(path))
    model = DeepLabV3Plus("resnet18", num_classes=3, output_stride=16, weights=str(path))
    _assert_backbone_holds(model.backbone, resnet18_state)


@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
def test_wrapped_checkpoint_is_unwrapped(tmp_path, resnet18_state, wrapper):
    path = tmp_path / "checkpoint.pt"
    torch.save({wrapper: resnet18_state, "epoch": 90}, path)
    _assert_backbone_holds(ResNetBackbone("resnet18", weights=str(path)), resnet18_state)


def test_checkpoint_without_batchnorm_counters_loads(tmp_path, resnet18_state):
    """torchvision's V1 files predate ``num_batches_tracked``; they must still load."""
    old_style = {k: v for k, v in resnet18_state.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pth"
    torch.save(old_style, path)
    backbone = ResNetBackbone("resnet18", weights=str(path))
    assert torch.equal(backbone.layer4[1].bn2.running_var, resnet18_state["layer4.1.bn2.running_var"])


def test_missing_hub_weights_error_names_the_exact_path(hub_dir):
    with pytest.raises(ModelError) as error:
        ResNetBackbone("resnet18", weights="IMAGENET1K_V1")
    message = str(error.value)
    assert str(hub_dir / "checkpoints" / RESNET18_V1_FILE) in message
    assert "\n" not in message
    with pytest.raises(ModelError, match=RESNET50_V2_FILE):
        ResNetBackbone("resnet50", weights="DEFAULT")


@pytest.mark.parametrize("name", ["IMAGENET1K_V1", "DEFAULT"])
def test_cached_hub_weights_load_without_download(hub_dir, resnet18_state, name):
    (hub_dir / "checkpoints").mkdir(parents=True)
    torch.save(resnet18_state, hub_dir / "checkpoints" / RESNET18_V1_FILE)
    _assert_backbone_holds(ResNetBackbone("resnet18", weights=name), resnet18_state)


def test_unknown_weights_name_lists_the_known_ones(hub_dir):
    with pytest.raises(ModelError, match="IMAGENET1K_V1, IMAGENET1K_V2, DEFAULT"):
        ResNetBackbone("resnet101", weights="IMAGENET22K")


def test_checkpoint_of_another_resnet_is_refused_naming_keys(tmp_path, resnet18_state):
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18_state, path)
    with pytest.raises(ModelError, match=r"resnet18\.pth: missing keys layer1\.0\.conv3\.weight, "):
        ResNetBackbone("resnet50", weights=str(path))
    resized = tmp_path / "resized.pth"
    torch.save({**resnet18_state, "layer2.0.conv1.weight": torch.zeros(128, 64, 1, 1)}, resized)
    with pytest.raises(ModelError, match=r"resized\.pth: shape mismatch for layer2\.0\.conv1\.weight$"):
        ResNetBackbone("resnet18", weights=str(resized))


def test_incomplete_and_foreign_checkpoints_are_refused(tmp_path, resnet18_state):
    incomplete = tmp_path / "no_layer4.pth"
    torch.save({k: v for k, v in resnet18_state.items() if not k.startswith("layer4.")}, incomplete)
    with pytest.raises(ModelError, match=r"no_layer4\.pth: missing keys layer4\.0\.conv1\.weight, .* more\)"):
        ResNetBackbone("resnet18", weights=str(incomplete))

    foreign = tmp_path / "foreign.pth"
    torch.save({**resnet18_state, "decoder.weight": torch.zeros(1)}, foreign)
    with pytest.raises(ModelError, match=r"foreign\.pth: unexpected keys decoder\.weight"):
        ResNetBackbone("resnet18", weights=str(foreign))


@pytest.mark.parametrize(
    ("file_name", "content", "match"),
    [
        ("garbage.pth", b"not a checkpoint", "not a readable weights file"),
        ("garbage.safetensors", b"\x00\x01", "not a readable weights file"),
        ("weights.txt", b"", "expected one of .pth, .pt, .safetensors"),
    ],
)
def test_unreadable_files_are_refused(tmp_path, file_name, content, match):
    path = tmp_path / file_name
    path.write_bytes(content)
    with pytest.raises(ModelError, match=match):
        ResNetBackbone("resnet18", weights=str(path))


def test_non_state_dict_and_missing_files_are_refused(tmp_path):
    listing = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], listing)
    with pytest.raises(ModelError, match="does not hold a state dict"):
        ResNetBackbone("resnet18", weights=str(listing))
    with pytest.raises(ModelError, match="file not found"):
        ResNetBackbone("resnet18", weights=str(tmp_path / "absent.pth"))


def test_bad_backbone_name_and_stride_are_value_errors():
    with pytest.raises(ValueError, match="did you mean 'resnet101'"):
        ResNetBackbone("resnet110")
    with pytest.raises(ModelError, match="must be 8 or 16, got 32"):
        ResNetBackbone("resnet18", output_stride=32)
