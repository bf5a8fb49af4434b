"""build_model from a ModelSettings, and the numbers describe_model / forward_flops report."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from segrecipes.models.settings import ModelSettings
from segrecipes.models import DeepLabV3Plus, ModelError, SMPModel, build_model, describe_model, forward_flops


def test_reference_config_builds_the_configured_deeplab():
    cfg = ModelSettings(backbone="resnet18", output_stride=16, dropout=0.3)
    model = build_model(cfg, num_classes=11)
    assert isinstance(model, DeepLabV3Plus)
    assert model.backbone.arch == "resnet18" and model.backbone.output_stride == 16
    assert model.head.dropout.p == 0.3 and model.head.classifier.out_channels == 11
    assert model.head.aspp.branches[1].depthwise[0].dilation == (6, 6)


def test_smp_config_builds_the_smp_architecture():
    model = build_model(ModelSettings(name="smp:FPN", backbone="resnet18"), num_classes=6)
    assert isinstance(model, SMPModel) and type(model.model).__name__ == "FPN"
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 50, 70)).shape == (1, 6, 50, 70)


def test_bad_class_count_and_bad_smp_name_are_model_errors():
    with pytest.raises(ModelError, match="num_classes: must be at least 1, got 0"):
        build_model(ModelSettings(backbone="resnet18"), num_classes=0)
    with pytest.raises(ModelError, match="did you mean smp:FPN"):
        build_model(ModelSettings(name="smp:FNP", backbone="resnet18"), num_classes=2)
    assert issubclass(ModelError, ValueError)


def test_describe_model_counts_parameters_and_flops_of_a_known_network():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 1, bias=False))
    model[0].bias.requires_grad_(False)
    description = describe_model(model, image_size=(10, 12))
    assert description["class"] == "Sequential"
    assert description["parameters"] == 3 * 8 * 9 + 8 + 8 * 2
    assert description["trainable_parameters"] == 3 * 8 * 9 + 8 * 2
    pixels = 10 * 12
    assert description["forward_gflops"] * 1e9 == pytest.approx(2 * pixels * (3 * 9 * 8 + 8 * 2))


def test_forward_flops_on_meta_equal_a_real_count_and_leave_the_model_alone():
    model = DeepLabV3Plus("resnet18", num_classes=3).train()
    before = model.head.classifier.weight.clone()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(torch.randn(1, 3, 65, 97))
    model.train()
    assert forward_flops(model, 65, 97) == counter.get_total_flops()
    assert forward_flops(model, 65, 97, batch_size=2) == 2 * counter.get_total_flops()
    assert model.training and torch.equal(model.head.classifier.weight, before)
    assert model.head.classifier.weight.device.type == "cpu"
