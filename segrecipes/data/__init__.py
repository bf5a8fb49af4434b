"""Datasets (ADE20k, CamVid, a user's folder, synthetic), the reference augmentation and resumable sampling."""

from __future__ import annotations

from .ade20k import ADE20k
from .augmented import AugmentedDataset
from .camvid import CamVid
from .errors import DataError
from .folder import SegmentationFolder
from .loader import build_train_loader
from .sampler import TrainSampler, eval_indices
from .spec import DataBundle, build_datasets, build_raw_dataset, parse_data_spec
from .synthetic import SyntheticShapes
from .transforms import EvalTransform, TrainTransform

__all__ = [
    "ADE20k",
    "AugmentedDataset",
    "CamVid",
    "DataBundle",
    "DataError",
    "EvalTransform",
    "SegmentationFolder",
    "SyntheticShapes",
    "TrainSampler",
    "TrainTransform",
    "build_datasets",
    "build_raw_dataset",
    "build_train_loader",
    "eval_indices",
    "parse_data_spec",
]
