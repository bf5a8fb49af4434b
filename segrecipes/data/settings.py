"""The data component's settings: where the data comes from, how it is read and the reference
augmentation pipeline (the ``data`` section of a run's config is this class)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from segrecipes.fields import Section


class DataSettings(Section):
    """Where the data comes from and the reference augmentation pipeline (SPEC §2)."""

    spec: str = "synthetic"
    crop_size: int = Field(512, gt=0)
    scale_range: tuple[float, float] = (0.5, 2.0)
    cat_max_ratio: float = Field(0.75, gt=0, le=1)
    crop_retries: int = Field(10, ge=1)
    flip_prob: float = Field(0.5, ge=0, le=1)
    photometric: bool = True
    num_workers: int = Field(2, ge=0)
    pin_memory: bool = True
    persistent_workers: bool = True
    check: bool = True  # header-level checks of every file before training (segrecipes data check does more)
    skip_bad: bool = False  # train without the files the checks flag, instead of refusing them
    # folder:PATH datasets only
    num_classes: int | None = Field(None, gt=0)
    ignore_value: int = Field(255, ge=0, le=65535)
    reduce_zero_label: bool = False
    label_map: dict[int, int | Literal["ignore"]] | None = None  # stored mask value -> class or ignore, e.g. {255: 1}
    palette: str | None = None  # colour masks: a palette file (R G B name per line, or CSV) or an indexed PNG
    # exports with a single split (CVAT's default, one COCO JSON): the fraction held out for validation, picked by a
    # seeded hash of each image's name (stable across runs; see segrecipes.data.splits)
    val_fraction: float = Field(0.0, ge=0, lt=1)
    split_seed: int = 0
    # coco:PATH only: the JSON of each split (relative to PATH; default annotations/{instances,stuff}_*<split>*.json)
    coco_train_json: str | None = None
    coco_val_json: str | None = None
    # coco:PATH and labelstudio:PATH: the pixels no annotation covers are the class "background", or ignored (255)
    unannotated: Literal["background", "ignore"] = "background"
    # any dataset
    in_channels: int = Field(3, ge=1)  # image channels (.npy/.tif images may have more than 3)
    mean: list[float] | Literal["auto"] | None = None  # per channel, in stored units; None: ImageNet's, for 8-bit RGB
    std: list[float] | Literal["auto"] | None = None  # "auto": from `segrecipes data stats` of the training split
    transform: str | None = None  # package.module:callable, (uint8 image, mask) -> (image, mask), after the pipeline
    # synthetic datasets only
    synthetic_train_size: int = Field(256, gt=0)
    synthetic_val_size: int = Field(64, gt=0)
    synthetic_image_size: int = Field(96, ge=16)
    synthetic_num_classes: int = Field(6, ge=2, le=255)  # 150 mimics ADE20k's class count in benchmarks
    synthetic_seed: int = 0

    @field_validator("scale_range")
    @classmethod
    def _check_scales(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0 < low <= high:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {list(value)}")
        return value

    @field_validator("transform")
    @classmethod
    def _check_transform(cls, value: str | None) -> str | None:
        if value is not None and (value.count(":") != 1 or not all(value.split(":"))):
            raise ValueError(f"expected package.module:callable, got {value!r}")
        return value

    @model_validator(mode="after")
    def _check_statistics(self) -> DataSettings:
        """Keys checked together are checked where the dataset is built (data.spec.channel_stats), as
        ``--set`` overrides are validated one at a time."""
        if isinstance(self.std, list) and min(self.std) <= 0:
            raise ValueError(f"data.std must be positive, got {self.std}")
        return self
