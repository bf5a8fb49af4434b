"""Drive the real :class:`~segrecipes.engine.trainer.Trainer` one step at a time on synthetic batches.

Benchmarks build a Trainer exactly as ``segrecipes train`` does (same model, methods, loss, optimizer,
precision, compile) on the ``synthetic`` spec at the requested size, then feed it random batches that
already sit on the device, so what is timed is the product's step and nothing else.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from typing import Any

import torch

from segrecipes.config import RunConfig, build_config, merge_dicts
from segrecipes.engine.trainer import Trainer

# Enough optimizer steps that the learning-rate schedule stays at its start for any benchmark length.
BENCH_DURATION = "1000000ba"
# Share of pixels labelled "ignore" in a synthetic target, so the loss's masking is exercised.
IGNORE_FRACTION = 0.05


def bench_config(config: RunConfig, image_size: int, batch_size: int) -> RunConfig:
    """``config`` on synthetic ``image_size`` squares, ``batch_size`` per step, with no eval, checkpoints or logs.

    Model, methods, loss, optimizer, precision, compile and microbatching are kept as configured; the
    pretrained weights are not loaded (they do not change the speed, and a recipe then runs offline).
    """
    overrides: dict[str, Any] = {
        "model": {"weights": None},
        "data": {
            "spec": "synthetic", "crop_size": image_size, "eval_size": image_size,
            "synthetic_image_size": image_size, "synthetic_train_size": batch_size, "synthetic_val_size": 2,
            "num_workers": 0, "persistent_workers": False,
        },
        "train": {
            "global_batch_size": batch_size, "duration": BENCH_DURATION, "eval_interval": None,
            "checkpoint_interval": None, "eval_at_start": False, "progress": "none",
        },
    }
    return build_config(merge_dicts(config.to_dict(), overrides), "bench settings")


@contextlib.contextmanager
def bench_trainer(config: RunConfig) -> Iterator[Trainer]:
    """A Trainer for ``config`` whose run folder (config.yaml, TensorBoard) is deleted afterwards."""
    with tempfile.TemporaryDirectory(prefix="segrecipes-bench-") as run_dir:
        trainer = Trainer(config, run_dir)
        try:
            yield trainer
        finally:
            trainer.logger.close()


def synthetic_batch(trainer: Trainer, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random uint8 image batch and class-index target of the trainer's size, on its device."""
    cfg = trainer.cfg
    batch, size = cfg.train.global_batch_size, cfg.data.synthetic_image_size
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator)
    target = torch.randint(0, trainer.data.num_classes, (batch, size, size), generator=generator)
    ignored = torch.rand(target.shape, generator=generator) < IGNORE_FRACTION
    target[ignored] = trainer.data.ignore_index
    return images.to(trainer.device), target.to(trainer.device)


def engine_step(trainer: Trainer, images: torch.Tensor, target: torch.Tensor) -> None:
    """One optimizer step as ``Trainer.fit`` takes it, counted in the trainer's progress."""
    trainer.step(images, target)
    trainer.progress_state["step"] += 1


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so a host clock read after it measures that work (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
