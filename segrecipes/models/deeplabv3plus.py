"""The reference DeepLabv3+: a dilated ResNet and mmseg's depthwise-separable ASPP head (SPEC §2).

Written out by hand, module for module, because this head *is* the system whose published numbers
the recipes reproduce: its widths, dilations, separable convs and init all change the result.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import ResNetBackbone
from .weights import ModelError

HEAD_CHANNELS = 512
LOW_LEVEL_HEAD_CHANNELS = 48
# ASPP dilations of the three separable branches; they shrink with a coarser feature map.
ASPP_DILATIONS = {8: (12, 24, 36), 16: (6, 12, 18)}


class ConvBNReLU(nn.Sequential):
    """Conv (no bias: BN has one) -> BatchNorm -> ReLU, mmcv's ``ConvModule``."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1, groups: int = 1
    ) -> None:
        padding = dilation * (kernel_size // 2)
        super().__init__(
            nn.Conv2d(
                in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, groups=groups, bias=False
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class DepthwiseSeparableConv(nn.Sequential):
    """Depthwise 3x3 (BN, ReLU) then pointwise 1x1 (BN, ReLU): mmcv's ``DepthwiseSeparableConvModule``."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.depthwise = ConvBNReLU(in_channels, in_channels, 3, dilation=dilation, groups=in_channels)
        self.pointwise = ConvBNReLU(in_channels, out_channels, 1)


class ImagePool(nn.Module):
    """Global context: average the whole map, project it, broadcast it back (bilinear, as mmseg)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.project = ConvBNReLU(in_channels, out_channels, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = self.project(self.pool(features))
        return F.interpolate(pooled, size=features.shape[-2:], mode="bilinear", align_corners=False)


class DepthwiseSeparableASPP(nn.Module):
    """Image pool + a 1x1 branch + separable dilated 3x3 branches, concatenated and fused by a 3x3 conv."""

    def __init__(self, in_channels: int, out_channels: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.image_pool = ImagePool(in_channels, out_channels)
        self.branches = nn.ModuleList(
            [ConvBNReLU(in_channels, out_channels, 1)]
            + [DepthwiseSeparableConv(in_channels, out_channels, dilation=d) for d in dilations]
        )
        self.bottleneck = ConvBNReLU((len(dilations) + 2) * out_channels, out_channels, 3)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        outputs = [self.image_pool(features)] + [branch(features) for branch in self.branches]
        return self.bottleneck(torch.cat(outputs, dim=1))


class DeepLabV3PlusHead(nn.Module):
    """mmseg ``DepthwiseSeparableASPPHead``: ASPP on the deep features, fused with stride-4 detail."""

    def __init__(
        self,
        in_channels: int,
        low_level_channels: int,
        num_classes: int,
        output_stride: int = 8,
        dropout: float = 0.1,
        channels: int = HEAD_CHANNELS,
    ) -> None:
        super().__init__()
        self.aspp = DepthwiseSeparableASPP(in_channels, channels, ASPP_DILATIONS[output_stride])
        self.low_level_project = ConvBNReLU(low_level_channels, LOW_LEVEL_HEAD_CHANNELS, 1)
        self.fuse = nn.Sequential(
            DepthwiseSeparableConv(channels + LOW_LEVEL_HEAD_CHANNELS, channels),
            DepthwiseSeparableConv(channels, channels),
        )
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.apply(_init_head_module)

    def forward(self, low_level: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Logits at the stride of ``low_level`` (4)."""
        context = self.aspp(features)
        context = F.interpolate(context, size=low_level.shape[-2:], mode="bilinear", align_corners=False)
        fused = self.fuse(torch.cat([context, self.low_level_project(low_level)], dim=1))
        return self.classifier(self.dropout(fused))


def _init_head_module(module: nn.Module) -> None:
    """The reference init: kaiming-normal weights, zero biases, BN as identity."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class DeepLabV3Plus(nn.Module):
    """DeepLabv3+ with a dilated ResNet; any input size, logits at the input size.

    Args:
        backbone: ``resnet18``/``34``/``50``/``101``.
        num_classes: channels of the returned logits.
        output_stride: 8 (the reference) or 16 (about 3x fewer FLOPs).
        weights: None (random), a torchvision weights name, from the hub cache or downloaded into it
            (``IMAGENET1K_V2``, ``DEFAULT``...), or a local ``.pth``/``.pt``/``.safetensors`` file.
        dropout: Dropout2d probability before the classifier.
        head_channels: width of the head (512 in the reference; smaller only for quick CPU demos).
        in_channels: image channels; RGB weights are adapted to other counts (timm's ``adapt_input_conv``).
    """

    def __init__(
        self,
        backbone: str = "resnet101",
        num_classes: int = 150,
        output_stride: int = 8,
        weights: str | None = None,
        dropout: float = 0.1,
        head_channels: int = HEAD_CHANNELS,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ModelError(f"num_classes: must be at least 1, got {num_classes}")
        self.backbone = ResNetBackbone(backbone, output_stride, weights, in_channels)
        self.head = DeepLabV3PlusHead(
            self.backbone.out_channels, self.backbone.low_level_channels, num_classes, output_stride, dropout,
            head_channels,
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, in_channels, H, W) -> logits (B, num_classes, H, W)."""
        logits = self.head(*self.backbone(images))
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
