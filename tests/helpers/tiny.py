"""A tiny but complete run configuration: synthetic data, ResNet-18, 32x32, trains in a fraction of a
second on a CPU."""

from __future__ import annotations

from segrecipes.config import RunConfig, load_config

TINY = (
    "data.spec=synthetic", "data.crop_size=32", "data.eval_size=32", "data.synthetic_image_size=32",
    "data.synthetic_train_size=16", "data.synthetic_val_size=4", "data.num_workers=0",
    "model.backbone=resnet18", "model.output_stride=16", "model.head_channels=32", "model.weights=null",
    "train.global_batch_size=4", "train.duration=6ba", "train.eval_interval=none", "train.checkpoint_interval=none",
    "train.progress=none", "optimizer.lr=0.01",
)  # fmt: skip


def tiny_config(*overrides: str, methods: tuple[str, ...] = (), recipe: str | None = None) -> RunConfig:
    """:data:`TINY` with ``overrides`` on top (later wins), optionally over a preset and with methods switched on."""
    return load_config(recipe, overrides=[*TINY, *overrides], methods=list(methods))


def tiny_args(*overrides: str, without: tuple[str, ...] = ()) -> list[str]:
    """:data:`TINY` (less the keys in ``without``) and ``overrides`` as command-line ``--set`` options."""
    kept = [override for override in TINY if override.split("=")[0] not in without]
    return [arg for override in (*kept, *overrides) for arg in ("--set", override)]
