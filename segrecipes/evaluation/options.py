"""How a model is run for evaluation and prediction: one settings type for ``eval``, ``predict`` and the
periodic evaluation during training (the ``eval`` section of a run's config is this class)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import ConfigDict, Field, model_validator

from segrecipes.fields import PythonSection

EvalProtocol = Literal["reference", "standard"]
InferenceMode = Literal["whole", "slide"]
TTAMode = Literal["none", "flip", "ms-flip"]
DEFAULT_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


class InferenceConfigError(ValueError):
    """An unknown protocol, inference mode or TTA mode, or an invalid window / scale / size setting."""


class InferenceOptions(PythonSection):
    """``protocol``: ``reference`` (image and mask resized to ``size`` squared) or ``standard`` (short side
    ``size``, long side at most ``max_long_side``, scored at the original size; what ``predict`` does).
    ``tta``: one view, plus its mirror (``flip``), or every scale of ``scales`` with its mirror
    (``ms-flip``). ``mode``: ``whole`` image or ``slide`` windows of ``crop_size`` every ``stride`` pixels.
    ``batch_size``: images per forward pass where their sizes allow. Built in Python, a bad value raises
    :class:`InferenceConfigError` naming the ``eval.`` key."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    section: ClassVar[str] = "eval"
    error_type: ClassVar[type[Exception]] = InferenceConfigError

    protocol: EvalProtocol = "reference"
    size: int = Field(512, gt=0)
    max_long_side: int = Field(2048, gt=0)
    tta: TTAMode = "none"
    scales: tuple[float, ...] = DEFAULT_SCALES
    mode: InferenceMode = "whole"
    crop_size: int = Field(512, gt=0)
    stride: int = Field(341, gt=0)
    batch_size: int = Field(8, gt=0)

    @model_validator(mode="after")
    def _check_window(self) -> InferenceOptions:
        if self.mode == "slide" and self.stride > self.crop_size:
            raise ValueError(f"eval.stride {self.stride} larger than eval.crop_size {self.crop_size} would leave "
                             "pixels unseen")
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"eval.scales: must be positive, got {list(self.scales)}")
        return self
