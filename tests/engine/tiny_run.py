"""A tiny but complete run configuration for CPU tests (synthetic data, ResNet-18, 32x32)."""

from __future__ import annotations

from segrecipes.config import RunConfig, load_config

TINY = [
    "data.spec=synthetic", "data.crop_size=32", "data.eval_size=32", "data.synthetic_image_size=32",
    "data.synthetic_train_size=16", "data.synthetic_val_size=4", "data.num_workers=0",
    "model.backbone=resnet18", "model.output_stride=16", "model.head_channels=32",
    "train.global_batch_size=4", "train.duration=6ba", "train.eval_interval=none", "train.checkpoint_interval=none",
    "train.progress=none", "optimizer.lr=0.01",
]


def tiny_config(*overrides: str, methods: tuple[str, ...] = ()) -> RunConfig:
    return load_config(overrides=[*TINY, *overrides], methods=list(methods))
