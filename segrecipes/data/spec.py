"""From ``data.spec`` (``ade20k:PATH``, ``camvid:PATH``, ``folder:PATH`` or ``synthetic``) to datasets."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config import DataConfig
from .ade20k import ADE20k
from .augmented import AugmentedDataset
from .camvid import CamVid
from .errors import DataError
from .files import IGNORE_INDEX, SegmentationFiles
from .folder import SegmentationFolder
from .synthetic import SyntheticShapes
from .transforms import EvalTransform, TrainTransform

__all__ = ["KINDS", "DataBundle", "RawDataset", "DataError", "build_datasets", "build_raw_dataset", "parse_data_spec"]

KINDS = ("ade20k", "camvid", "folder", "synthetic")
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
            hint = "use ade20k:PATH, camvid:PATH, folder:PATH or synthetic"
        raise DataError(f"data spec {text!r}: unknown kind {kind!r} ({hint})")
    if kind == "synthetic":
        if path:
            raise DataError(f"data spec {text!r}: 'synthetic' takes no path")
        return kind, None
    if not path:
        raise DataError(f"data spec {text!r}: missing path (use {kind}:PATH)")
    return kind, Path(path).expanduser()


def build_raw_dataset(cfg: DataConfig, split: str) -> RawDataset:
    """The raw dataset (original sizes, no augmentation) of one split; raises when it is empty."""
    kind, path = parse_data_spec(cfg.spec)
    raw: RawDataset
    if path is None:
        size = cfg.synthetic_train_size if split == "train" else cfg.synthetic_val_size
        raw = SyntheticShapes(size, cfg.synthetic_image_size, split, cfg.synthetic_seed)
    elif kind == "ade20k":
        raw = ADE20k(path, split)
    elif kind == "camvid":
        raw = CamVid(path, split)
    else:
        raw = SegmentationFolder(path, split, cfg.num_classes, cfg.ignore_value, cfg.reduce_zero_label)
    if len(raw) == 0:  # only file datasets can be empty
        raise DataError(f"data spec {cfg.spec!r}: no images found in split {split!r} (looked in {raw.image_dir})")
    if cfg.num_classes is not None and cfg.num_classes != raw.num_classes:
        raise DataError(f"data.num_classes is {cfg.num_classes} but {kind} has {raw.num_classes} classes")
    return raw


@dataclass
class DataBundle:
    """What the trainer and evaluator need; a split that was not requested is None."""

    train: AugmentedDataset | None
    val: AugmentedDataset | None
    train_raw: RawDataset | None
    val_raw: RawDataset | None
    num_classes: int
    class_names: list[str]
    ignore_index: int = IGNORE_INDEX


def build_datasets(cfg: DataConfig, splits: Sequence[str] = SPLITS) -> DataBundle:
    """Train (reference augmentation) and val (reference resize) datasets; pass ``splits=("val",)``
    when only evaluating, e.g. on data that has no training split."""
    unknown = [split for split in splits if split not in SPLITS]
    if unknown or not splits:
        raise ValueError(f"splits must be a non-empty subset of {SPLITS}, got {tuple(splits)}")
    train_raw = build_raw_dataset(cfg, "train") if "train" in splits else None
    val_raw = build_raw_dataset(cfg, "val") if "val" in splits else None
    train = None
    if train_raw is not None:
        transform = TrainTransform(
            cfg.crop_size, cfg.scale_range, cfg.cat_max_ratio, cfg.crop_retries, cfg.flip_prob, cfg.photometric
        )
        train = AugmentedDataset(train_raw, transform)
    val = AugmentedDataset(val_raw, EvalTransform(cfg.eval_size)) if val_raw is not None else None
    reference = train_raw if train_raw is not None else val_raw
    return DataBundle(
        train=train,
        val=val,
        train_raw=train_raw,
        val_raw=val_raw,
        num_classes=reference.num_classes,
        class_names=list(reference.class_names),
        ignore_index=reference.ignore_index,
    )
