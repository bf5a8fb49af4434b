"""Any segmentation_models_pytorch architecture (``smp:Unet``, ``smp:FPN``...), offline and at any size."""

from __future__ import annotations

import difflib
import inspect
import typing

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from .weights import ModelError, load_weights, read_weights

SMP_PREFIX = "smp:"
TIMM_ENCODER_PREFIX = "tu-"


def smp_architectures() -> dict[str, type[nn.Module]]:
    """Class name (``Unet``, ``DeepLabV3Plus``...) -> class, for every architecture smp ships."""
    return {cls.__name__: cls for cls in smp.MODEL_ARCHITECTURES_MAPPING.values()}


class SMPModel(nn.Module):
    """An smp network built without downloads that accepts any input size.

    smp needs H and W divisible by the encoder's output stride (usually 32). The input is zero-padded
    at the bottom and right — zero is the mean pixel after normalization, what the data pipeline pads
    images with — and the logits are cropped back to the input size.

    Args:
        arch: an smp class name, case-insensitive (``Unet``, ``FPN``, ``DeepLabV3Plus``...).
        encoder: an smp encoder name (``resnet18``, ``tu-convnext_tiny``...).
        num_classes: channels of the returned logits.
        output_stride: passed as ``encoder_output_stride`` to architectures that accept this value
            (DeepLabV3, DeepLabV3Plus); the others keep their own.
        weights: None (random encoder), a local file with the encoder's state dict (a torchvision
            ResNet checkpoint fits smp's ResNet encoders), or for torchvision-named encoders a
            torchvision weights name found in the local hub cache.
    """

    def __init__(
        self,
        arch: str,
        encoder: str,
        num_classes: int,
        output_stride: int | None = None,
        weights: str | None = None,
    ) -> None:
        super().__init__()
        architecture = _architecture(arch)
        _check_encoder(encoder)
        extra = {}
        if output_stride is not None and _accepts_output_stride(architecture, output_stride):
            extra["encoder_output_stride"] = output_stride
        try:
            self.model = architecture(encoder_name=encoder, encoder_weights=None, classes=num_classes, **extra)
        except (KeyError, ValueError, RuntimeError) as error:
            reason = str(error).strip("'\"").splitlines()[0][:200]
            raise ModelError(f"model: smp:{architecture.__name__} with encoder {encoder!r} failed: {reason}") from None
        self.pad_multiple = self.model.encoder.output_stride
        if weights is not None:
            load_weights(self.model.encoder, read_weights(weights, encoder), source=weights)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) -> logits (B, num_classes, H, W)."""
        height, width = images.shape[-2:]
        pad_bottom, pad_right = -height % self.pad_multiple, -width % self.pad_multiple
        if pad_bottom or pad_right:
            images = F.pad(images, (0, pad_right, 0, pad_bottom))
        return self.model(images)[..., :height, :width]


def _architecture(arch: str) -> type[nn.Module]:
    architectures = smp_architectures()
    by_lower_name = {name.lower(): cls for name, cls in architectures.items()}
    if arch.lower() in by_lower_name:
        return by_lower_name[arch.lower()]
    close = difflib.get_close_matches(arch, architectures, n=3, cutoff=0.5)
    lead = "did you mean" if close else "available:"
    names = ", ".join(SMP_PREFIX + name for name in close or architectures)
    raise ModelError(f"model.name: unknown smp architecture {arch!r} ({lead} {names})")


def _check_encoder(encoder: str) -> None:
    names = smp.encoders.get_encoder_names()
    if encoder in names or encoder.startswith(TIMM_ENCODER_PREFIX):
        return
    close = difflib.get_close_matches(encoder, names, n=3)
    hint = f"did you mean {', '.join(close)}" if close else f"e.g. {', '.join(names[:4])} or tu-<timm name>"
    raise ModelError(f"model.backbone: unknown smp encoder {encoder!r} ({hint})")


def _accepts_output_stride(architecture: type[nn.Module], output_stride: int) -> bool:
    parameter = inspect.signature(architecture).parameters.get("encoder_output_stride")
    if parameter is None:
        return False
    allowed = typing.get_args(parameter.annotation)
    return not allowed or output_stride in allowed
