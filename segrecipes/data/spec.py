"""From ``data.spec`` (``ade20k:PATH``, ``camvid:PATH``, ``folder:PATH``, a labelling tool's export such as
``coco:PATH``, or ``synthetic``) to datasets."""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path

from .settings import DataSettings
from . import ade20k, camvid, cityscapes, coco, cvat, folder, labelstudio, voc
from .errors import DataError
from .files import SegmentationFiles, SplitLayout
from .normalize import ChannelStats
from .synthetic import SyntheticShapes
from .transforms import TrainTransform
from .user_transform import UserTransform

__all__ = ["KINDS", "SPLITS", "RawDataset", "build_raw_dataset", "parse_data_spec", "split_assignment", "split_layout",
           "train_transform"]

KINDS = ("ade20k", "camvid", "cityscapes", "coco", "cvat", "folder", "labelstudio", "synthetic", "voc")
RawDataset = SegmentationFiles | SyntheticShapes
SPLITS = ("train", "val")


def parse_data_spec(text: str) -> tuple[str, Path | None]:
    """``'camvid:/data/CamVid'`` -> ``('camvid', Path('/data/CamVid'))``; ``'synthetic'`` -> ``('synthetic', None)``."""
    kind, _, path = text.partition(":")
    kind, path = kind.strip().lower(), path.strip()
    if kind not in KINDS:
        if "/" in kind or "\\" in kind:
            hint = f"put the kind before the path, e.g. folder:{text}"
        elif close := difflib.get_close_matches(kind, KINDS, n=1):
            hint = f"did you mean {close[0]!r}?"
        else:
            kinds = ", ".join(kind for kind in KINDS if kind != "synthetic")
            hint = f"use KIND:PATH with a kind of {kinds}, or synthetic"
        raise DataError(f"data spec {text!r}: unknown kind {kind!r} ({hint})")
    if kind == "synthetic":
        if path:
            raise DataError(f"data spec {text!r}: 'synthetic' takes no path")
        return kind, None
    if not path:
        raise DataError(f"data spec {text!r}: missing path (use {kind}:PATH)")
    return kind, Path(path).expanduser()


def split_layout(cfg: DataSettings, split: str) -> SplitLayout | None:
    """Where ``split``'s files are and how their labels map to classes; None for synthetic data."""
    kind, path = parse_data_spec(cfg.spec)
    if path is None:
        return None
    if kind == "ade20k":
        layout = ade20k.split_layout(path, split)
    elif kind == "camvid":
        layout = camvid.split_layout(path, split)
    elif kind == "cityscapes":
        layout = cityscapes.split_layout(path, split)
    elif kind == "voc":
        layout = voc.split_layout(path, split, cfg.val_fraction, cfg.split_seed)
    elif kind == "cvat":
        layout = cvat.split_layout(path, split, cfg.val_fraction, cfg.split_seed)
    elif kind == "labelstudio":
        layout = labelstudio.split_layout(path, split, cfg.unannotated, cfg.val_fraction, cfg.split_seed)
    elif kind == "coco":
        given = {"train": cfg.coco_train_json, "val": cfg.coco_val_json}
        layout = coco.split_layout(path, split, given, cfg.unannotated, cfg.val_fraction, cfg.split_seed)
    else:
        return folder.split_layout(path, split, cfg.num_classes, cfg.ignore_value, cfg.reduce_zero_label,
                                   cfg.label_map, cfg.palette, cfg.in_channels, channel_stats(cfg))
    return dataclasses.replace(layout, channels=cfg.in_channels, stats=channel_stats(cfg))


def split_assignment(cfg: DataSettings) -> Path | None:
    """The record of which images ``data.val_fraction`` held out (None unless a one-split export was split)."""
    layout = split_layout(cfg, "train")
    return layout.listing.assignment if layout is not None and layout.listing is not None else None


def channel_stats(cfg: DataSettings) -> ChannelStats | None:
    """``data.mean``/``data.std`` as a normalization; None for ImageNet's on 8-bit RGB (done on the device)."""
    if (cfg.mean is None) != (cfg.std is None):
        raise DataError("give data.mean and data.std together (or neither: ImageNet's, for 8-bit RGB)")
    if cfg.in_channels != 3 and cfg.mean is None:
        raise DataError(f"data.in_channels is {cfg.in_channels}: give data.mean and data.std per channel (in the "
                        "images' stored units), or auto (from the training split)")
    for key in ("mean", "std"):
        value = getattr(cfg, key)
        if isinstance(value, list) and len(value) != cfg.in_channels:
            raise DataError(f"data.{key} has {len(value)} values but data.in_channels is {cfg.in_channels}")
    if not isinstance(cfg.mean, list) or not isinstance(cfg.std, list):
        return None
    return ChannelStats.of(cfg.mean, cfg.std)


def build_raw_dataset(cfg: DataSettings, split: str) -> RawDataset:
    """The raw dataset (original sizes, no augmentation) of one split; raises when it is empty."""
    if split not in SPLITS:
        raise DataError(f"split {split!r}: use one of {', '.join(SPLITS)}")
    layout = split_layout(cfg, split)
    raw: RawDataset
    if layout is None:
        if cfg.in_channels != 3 or cfg.mean == "auto" or cfg.std == "auto":
            raise DataError("synthetic data is 8-bit RGB: give data.mean and data.std as numbers (or neither: "
                            "ImageNet's); data.in_channels does not apply")
        size = cfg.synthetic_train_size if split == "train" else cfg.synthetic_val_size
        raw = SyntheticShapes(size, cfg.synthetic_image_size, split, cfg.synthetic_seed, cfg.synthetic_num_classes,
                              channel_stats(cfg))
    else:
        raw = SegmentationFiles(layout)
    if len(raw) == 0:  # only file datasets can be empty
        raise DataError(f"data spec {cfg.spec!r}: no images found in split {split!r} (looked in {raw.image_dir})")
    if cfg.num_classes is not None and cfg.num_classes != raw.num_classes:
        raise DataError(f"data.num_classes is {cfg.num_classes} but {cfg.spec} has {raw.num_classes} classes")
    return raw


def train_transform(cfg: DataSettings) -> TrainTransform:
    """The reference training augmentation with the config's crop, scales and switches, then ``data.transform``."""
    extra = UserTransform(cfg.transform) if cfg.transform else None
    return TrainTransform(cfg.crop_size, cfg.scale_range, cfg.cat_max_ratio, cfg.crop_retries, cfg.flip_prob,
                          cfg.photometric, extra=extra)
