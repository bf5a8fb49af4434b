"""The reference DeepLabv3+ against SPEC §2: size, cost, structure, strides, init, odd input sizes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import get_model

from segrecipes.models import DeepLabV3Plus, ResNetBackbone, forward_flops

NUM_CLASSES = 150


@pytest.fixture(scope="module")
def reference_model() -> DeepLabV3Plus:
    """ResNet-101 OS8, 150 classes, on the meta device: shapes only, so it costs nothing on CPU."""
    with torch.device("meta"):
        return DeepLabV3Plus("resnet101", NUM_CLASSES, output_stride=8)


def _bn(channels: int) -> int:
    return 2 * channels


def _separable_parameters(cin: int, cout: int) -> int:
    return (cin * 9 + _bn(cin)) + (cin * cout + _bn(cout))


def _separable_flops(cin: int, cout: int, pixels: int) -> int:
    return 2 * pixels * (cin * 9 + cin * cout)


def _reference_head_parameters(in_ch: int = 2048, low_ch: int = 256, width: int = 512, classes: int = 150) -> int:
    """Parameters of the SPEC §2 head, written out layer by layer."""
    image_pool = in_ch * width + _bn(width)
    aspp_1x1 = in_ch * width + _bn(width)
    aspp_separable = 3 * _separable_parameters(in_ch, width)
    bottleneck = 5 * width * width * 9 + _bn(width)
    low_level = low_ch * 48 + _bn(48)
    fuse = _separable_parameters(width + 48, width) + _separable_parameters(width, width)
    classifier = width * classes + classes
    return image_pool + aspp_1x1 + aspp_separable + bottleneck + low_level + fuse + classifier


def _reference_head_flops(in_ch: int = 2048, low_ch: int = 256, width: int = 512, classes: int = 150) -> int:
    """Forward FLOPs (2 per multiply-add) of the SPEC §2 head for a 512x512 input at OS8."""
    deep, low = 64 * 64, 128 * 128  # pixels at stride 8 and stride 4
    image_pool = 2 * in_ch * width  # on the pooled 1x1 map
    aspp = 2 * deep * in_ch * width + 3 * _separable_flops(in_ch, width, deep) + 2 * deep * 5 * width * width * 9
    decoder = 2 * low * low_ch * 48 + _separable_flops(width + 48, width, low) + _separable_flops(width, width, low)
    classifier = 2 * low * width * classes
    return image_pool + aspp + decoder + classifier


def test_reference_parameter_count_matches_torchvision_backbone_plus_spec_head(reference_model):
    with torch.device("meta"):
        resnet101 = get_model("resnet101", weights=None)
    backbone = sum(p.numel() for p in resnet101.parameters()) - (2048 * 1000 + 1000)  # minus fc
    expected = backbone + _reference_head_parameters()
    assert sum(p.numel() for p in reference_model.parameters()) == expected


def test_reference_forward_flops_match_closed_form_and_spec_band(reference_model):
    images = torch.empty(1, 3, 512, 512, device="meta")
    with torch.device("meta"):
        resnet101 = get_model("resnet101", weights=None, replace_stride_with_dilation=[False, True, True])
    with FlopCounterMode(display=False) as backbone_counter:
        resnet101(images)
    expected = backbone_counter.get_total_flops() - 2 * 2048 * 1000 + _reference_head_flops()

    with FlopCounterMode(display=False) as counter:
        reference_model.eval()(images)
    measured = counter.get_total_flops()
    print(f"DeepLabV3+ R-101 OS8 512x512 forward: {measured / 1e12:.4f} TFLOP")
    assert measured == expected
    assert forward_flops(reference_model, 512, 512) == measured
    # SPEC §4 says "roughly 0.4-0.5 TFLOP"; the exact count is 0.507 (0.354 backbone + 0.153 head).
    assert 0.4e12 <= measured <= 0.55e12


def _conv(module: nn.Module) -> nn.Conv2d:
    assert isinstance(module, nn.Sequential) and len(module) == 3
    assert isinstance(module[1], nn.BatchNorm2d) and isinstance(module[2], nn.ReLU)
    assert module[0].bias is None, "a conv followed by BN has no bias"
    assert module[1].num_features == module[0].out_channels
    return module[0]


def _check_conv(module, cin, cout, kernel, dilation=1, groups=1):
    conv = _conv(module)
    assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (cin, cout, (kernel, kernel))
    assert conv.dilation == (dilation, dilation) and conv.groups == groups
    assert conv.padding == (dilation * (kernel // 2),) * 2 and conv.stride == (1, 1)


def _check_separable(module, cin, cout, dilation=1):
    _check_conv(module.depthwise, cin, cin, 3, dilation, groups=cin)
    _check_conv(module.pointwise, cin, cout, 1)


@pytest.mark.parametrize(("output_stride", "dilations"), [(8, (12, 24, 36)), (16, (6, 12, 18))])
def test_head_structure_follows_spec(output_stride, dilations):
    with torch.device("meta"):
        model = DeepLabV3Plus("resnet101", NUM_CLASSES, output_stride=output_stride)
    head = model.head
    pool = head.aspp.image_pool
    assert isinstance(pool.pool, nn.AdaptiveAvgPool2d) and pool.pool.output_size == 1
    _check_conv(pool.project, 2048, 512, 1)
    assert len(head.aspp.branches) == 4
    _check_conv(head.aspp.branches[0], 2048, 512, 1)
    for branch, dilation in zip(head.aspp.branches[1:], dilations):
        _check_separable(branch, 2048, 512, dilation)
    _check_conv(head.aspp.bottleneck, 2560, 512, 3)  # plain 3x3, not separable
    _check_conv(head.low_level_project, 256, 48, 1)
    assert len(head.fuse) == 2
    _check_separable(head.fuse[0], 560, 512)
    _check_separable(head.fuse[1], 512, 512)
    assert isinstance(head.dropout, nn.Dropout2d) and head.dropout.p == 0.1
    classifier = head.classifier
    assert (classifier.in_channels, classifier.out_channels, classifier.kernel_size) == (512, NUM_CLASSES, (1, 1))
    assert classifier.bias is not None
    # No auxiliary head: the classifier is the only layer that produces class scores.
    scoring = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.out_channels == NUM_CLASSES]
    assert scoring == [classifier]
    assert set(dict(model.named_children())) == {"backbone", "head"}


@pytest.mark.parametrize("output_stride", [8, 16])
def test_resnet18_odd_size_forward_backward_gives_input_size_logits(output_stride):
    torch.manual_seed(0)
    model = DeepLabV3Plus("resnet18", num_classes=5, output_stride=output_stride)
    images = torch.randn(2, 3, 65, 97)
    logits = model(images)
    assert logits.shape == (2, 5, 65, 97)
    logits.square().mean().backward()
    for parameter in (model.backbone.conv1.weight, model.head.aspp.bottleneck[0].weight, model.head.classifier.bias):
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all() and parameter.grad.abs().sum() > 0
    with torch.no_grad():
        assert model.eval()(images[:1]).shape == (1, 5, 65, 97)


@pytest.mark.parametrize(("output_stride", "deep_size"), [(8, (16, 24)), (16, (8, 12))])
def test_layer4_features_have_the_requested_stride(output_stride, deep_size):
    backbone = ResNetBackbone("resnet18", output_stride).eval()
    with torch.no_grad():
        low_level, deep = backbone(torch.randn(1, 3, 128, 192))
    assert low_level.shape == (1, 64, 32, 48)
    assert deep.shape == (1, 512, *deep_size)


@pytest.mark.parametrize("output_stride", [8, 16])
def test_dilated_basic_blocks_equal_undilated_resnet_where_both_compute(output_stride):
    """Trading stride for dilation must not change the function: the OS32 torchvision net's layer4
    equals the dilated layer4 subsampled by 32 / output_stride (exact, borders included)."""
    torch.manual_seed(0)
    plain = get_model("resnet18", weights=None).eval()
    backbone = ResNetBackbone("resnet18", output_stride).eval()
    backbone.load_state_dict({k: v for k, v in plain.state_dict().items() if not k.startswith("fc.")})
    images = torch.randn(1, 3, 75, 101)
    with torch.no_grad():
        stem = plain.maxpool(plain.relu(plain.bn1(plain.conv1(images))))
        expected = plain.layer4(plain.layer3(plain.layer2(plain.layer1(stem))))
        _, deep = backbone(images)
    step = 32 // output_stride
    torch.testing.assert_close(deep[..., ::step, ::step], expected, rtol=1e-4, atol=1e-4)


def test_head_init_is_kaiming_normal_with_identity_batchnorm():
    torch.manual_seed(0)
    model = DeepLabV3Plus("resnet18", num_classes=7)
    head_bns = [m for m in model.head.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(head_bns) == 14  # pool 1 + ASPP 1 + 3x2 separable + bottleneck 1 + low level 1 + fuse 2x2
    for bn in head_bns:
        assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and torch.equal(bn.bias, torch.zeros_like(bn.bias))
    assert torch.equal(model.head.classifier.bias, torch.zeros(7))

    # kaiming_normal_ defaults: fan_in, gain sqrt(2) -> std = sqrt(2 / fan_in).
    bottleneck = model.head.aspp.bottleneck[0].weight  # 512 x 2560 x 3 x 3, 11.8M samples
    assert bottleneck.mean().abs() < 1e-4
    assert bottleneck.std().item() == pytest.approx(math.sqrt(2 / (2560 * 9)), rel=0.005)
    depthwise = model.head.aspp.branches[1].depthwise[0].weight  # 512 x 1 x 3 x 3, fan_in 9
    assert depthwise.std().item() == pytest.approx(math.sqrt(2 / 9), rel=0.05)
    # The backbone keeps torchvision's init (kaiming fan_out), not the head's fan_in (which would be 3 * 49).
    assert model.backbone.conv1.weight.std().item() == pytest.approx(math.sqrt(2 / (64 * 49)), rel=0.05)
