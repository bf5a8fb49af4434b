"""How a model is run for evaluation and prediction: one settings type for ``eval``, ``predict`` and the
periodic evaluation during training (the config's ``eval`` section becomes one of these)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EvalProtocol = Literal["reference", "standard"]
InferenceMode = Literal["whole", "slide"]
TTAMode = Literal["none", "flip", "ms-flip"]
DEFAULT_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


class InferenceConfigError(ValueError):
    """An unknown protocol, inference mode or TTA mode, or an invalid window / scale / size setting."""


@dataclass(frozen=True)
class InferenceOptions:
    """``protocol``: ``reference`` (image and mask resized to ``size`` squared) or ``standard`` (short side
    ``size``, long side at most ``max_long_side``, scored at the original size; what ``predict`` does).
    ``tta``: one view, plus its mirror (``flip``), or every scale of ``scales`` with its mirror
    (``ms-flip``). ``mode``: ``whole`` image or ``slide`` windows of ``crop_size`` every ``stride`` pixels.
    ``batch_size``: images per forward pass where their sizes allow."""

    protocol: EvalProtocol = "reference"
    size: int = 512
    max_long_side: int = 2048
    tta: TTAMode = "none"
    scales: tuple[float, ...] = DEFAULT_SCALES
    mode: InferenceMode = "whole"
    crop_size: int = 512
    stride: int = 341
    batch_size: int = 8

    def __post_init__(self) -> None:
        choices = {"protocol": ("reference", "standard"), "tta": ("none", "flip", "ms-flip"),
                   "mode": ("whole", "slide")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise InferenceConfigError(f"eval.{key}: unknown value {getattr(self, key)!r} "
                                           f"(use {', '.join(allowed)})")
        for key in ("size", "max_long_side", "crop_size", "stride", "batch_size"):
            if getattr(self, key) <= 0:
                raise InferenceConfigError(f"eval.{key}: must be positive, got {getattr(self, key)}")
        if self.mode == "slide" and self.stride > self.crop_size:
            raise InferenceConfigError(f"eval.stride {self.stride} larger than eval.crop_size {self.crop_size} "
                                       "would leave pixels unseen")
        if not self.scales or min(self.scales) <= 0:
            raise InferenceConfigError(f"eval.scales: must be positive, got {list(self.scales)}")
