"""The model component's settings: which network, its backbone and weights (the ``model`` section of a
run's config is this class)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from segrecipes.fields import IntervalField, Section


class ModelSettings(Section):
    """The network: the reference DeepLabv3+ or any segmentation_models_pytorch architecture."""

    name: str = "deeplabv3plus"
    backbone: str = "resnet101"
    output_stride: Literal[8, 16] = 8
    weights: str | None = None
    dropout: float = Field(0.1, ge=0, lt=1)
    head_channels: int = Field(512, gt=0)  # the reference head is 512 wide; smaller for quick CPU demos
    freeze_backbone: IntervalField = None  # train only the head for this long (any unit); frozen BatchNorm in eval mode

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if value != "deeplabv3plus" and not value.startswith("smp:"):
            raise ValueError(f"unknown model {value!r}: use 'deeplabv3plus' or 'smp:<Arch>' (e.g. smp:Unet)")
        return value
