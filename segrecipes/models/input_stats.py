"""The input normalization that pretrained encoder weights were trained with."""

from __future__ import annotations

import timm

from .smp_model import TIMM_DEFAULT_WEIGHTS, TIMM_ENCODER_PREFIX
from .weights import is_weight_file

Stats = tuple[tuple[float, ...], tuple[float, ...]]


def weights_normalization(backbone: str, weights: str | None) -> Stats | None:
    """(mean, std) per RGB channel in [0, 1] units that ``backbone``'s named ``weights`` expect, as timm
    publishes them for a ``tu-`` encoder (``tf_efficientnet_lite0``: 0.5 and 0.5, inputs in [-1, 1]);
    None when unknown: no weights, a local file, or an encoder whose weights name no such numbers (the
    torchvision and smp ImageNet weights take ImageNet's, the default)."""
    if weights is None or not backbone.startswith(TIMM_ENCODER_PREFIX) or is_weight_file(weights):
        return None
    name = backbone.removeprefix(TIMM_ENCODER_PREFIX)
    try:
        config = timm.models.get_pretrained_cfg(name if weights in TIMM_DEFAULT_WEIGHTS else f"{name}.{weights}")
    except RuntimeError:  # an unknown tag: building the model says so, as one line
        return None
    if config is None:
        return None
    return tuple(map(float, config.mean)), tuple(map(float, config.std))
