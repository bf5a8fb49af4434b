"""torchvision ResNets as dilated feature extractors for DeepLabv3+ (SPEC §2)."""

from __future__ import annotations

import difflib

import torch
from torch import nn
from torchvision.models import get_model
from torchvision.models.resnet import BasicBlock, ResNet

from .weights import ModelError, load_weights, read_weights

# (layer1 channels at stride 4, layer4 channels) per supported ResNet.
RESNET_CHANNELS = {
    "resnet18": (64, 512),
    "resnet34": (64, 512),
    "resnet50": (256, 2048),
    "resnet101": (256, 2048),
}
# torchvision's replace_stride_with_dilation for layer2, layer3, layer4.
DILATED_LAYERS = {8: [False, True, True], 16: [False, False, True]}


class ResNetBackbone(nn.Module):
    """The stem and four stages of a torchvision ResNet, returning layer1 and layer4 features.

    Module names are torchvision's, so its checkpoints load unchanged (the ``fc`` head is dropped).
    With ``in_channels`` other than 3, ``conv1`` takes that many channels and RGB weights are adapted to it.
    """

    def __init__(
        self, arch: str = "resnet101", output_stride: int = 8, weights: str | None = None, in_channels: int = 3
    ) -> None:
        super().__init__()
        if arch not in RESNET_CHANNELS:
            close = difflib.get_close_matches(arch, RESNET_CHANNELS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"available: {', '.join(RESNET_CHANNELS)}"
            raise ModelError(f"model.backbone: unknown backbone {arch!r} ({hint})")
        if output_stride not in DILATED_LAYERS:
            raise ModelError(f"model.output_stride: must be 8 or 16, got {output_stride!r}")
        self.arch = arch
        self.output_stride = output_stride
        self.low_level_channels, self.out_channels = RESNET_CHANNELS[arch]

        resnet = _dilated_resnet(arch, DILATED_LAYERS[output_stride])
        if in_channels != resnet.conv1.in_channels:
            resnet.conv1 = _input_conv(resnet.conv1, in_channels)
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4
        if weights is not None:
            load_weights(self, read_weights(weights, arch), source=weights)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, in_channels, H, W) -> (layer1 at stride 4, layer4 at ``output_stride``)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        low_level = self.layer1(x)
        return low_level, self.layer4(self.layer3(self.layer2(low_level)))


def _input_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """``conv`` for ``in_channels`` inputs, initialised as torchvision initialises a ResNet's convs."""
    replacement = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=False)
    nn.init.kaiming_normal_(replacement.weight, mode="fan_out", nonlinearity="relu")
    return replacement


def _dilated_resnet(arch: str, dilate: list[bool]) -> ResNet:
    """torchvision dilates Bottleneck stages itself but refuses BasicBlock ones; those we convert."""
    if arch in ("resnet18", "resnet34"):
        resnet = get_model(arch, weights=None)
        _dilate_basic_layers(resnet, dilate)
        return resnet
    return get_model(arch, weights=None, replace_stride_with_dilation=dilate)


def _dilate_basic_layers(resnet: ResNet, dilate: list[bool]) -> None:
    """Trade the stride of the chosen BasicBlock stages for dilation, after construction.

    Same rule as torchvision's Bottleneck path (and timm): a dilated stage drops its stride, its
    formerly strided conv keeps the previous dilation and every later 3x3 conv takes the doubled one,
    so the features equal the undilated network's at the positions both compute.
    """
    dilation = 1
    for layer, dilated in zip((resnet.layer2, resnet.layer3, resnet.layer4), dilate):
        if not dilated:
            continue
        previous, dilation = dilation, dilation * 2
        first: BasicBlock = layer[0]
        first.conv1.stride = (1, 1)
        first.downsample[0].stride = (1, 1)
        for block in layer:
            for conv in (block.conv1, block.conv2):
                rate = previous if conv is first.conv1 else dilation
                conv.dilation, conv.padding = (rate, rate), (rate, rate)
