"""Datasets (ADE20k, CamVid, Cityscapes, Pascal VOC, a user's folder, COCO / CVAT / Label Studio exports, synthetic),
the reference augmentation and resumable sampling."""

from __future__ import annotations

from .ade20k import ADE20k
from .augmented import AugmentedDataset
from .camvid import CamVid
from .errors import DataError
from .files import SegmentationFiles, SplitLayout
from .folder import SegmentationFolder
from .loader import build_train_loader
from .normalize import normalize
from .sampler import TrainSampler
from .spec import build_raw_dataset, parse_data_spec, split_layout, train_transform
from .synthetic import SyntheticShapes
from .transforms import TrainTransform

__all__ = [
    "ADE20k",
    "AugmentedDataset",
    "CamVid",
    "DataError",
    "SegmentationFiles",
    "SegmentationFolder",
    "SplitLayout",
    "SyntheticShapes",
    "TrainSampler",
    "TrainTransform",
    "build_raw_dataset",
    "build_train_loader",
    "normalize",
    "parse_data_spec",
    "split_layout",
    "train_transform",
]
