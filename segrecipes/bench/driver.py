"""Drive the real :class:`~segrecipes.engine.trainer.Trainer` one step at a time on synthetic batches.

Benchmarks build a Trainer exactly as ``segrecipes train`` does (``run.build_trainer``: same model,
methods, loss, optimizer, precision, compile) on the ``synthetic`` spec at the requested size, then feed
it random batches that already sit on the device, so what is timed is the product's step and nothing else.
"""

from __future__ import annotations

from typing import Any

import torch

from segrecipes.config import RunConfig, build_config, merge_dicts
from segrecipes.engine.trainer import Trainer
from segrecipes.run import build_trainer

# Enough optimizer steps that the learning-rate schedule stays at its start for any benchmark length.
BENCH_DURATION = "1000000ba"
# A bench times each method at the intervals the reference ran it with: the literal constants, not ones
# carried over to a million-step synthetic run (an EMA every 2,548 steps would hide its cost).
LITERAL = "recipe.transfer=none"
# Share of pixels labelled "ignore" in a synthetic target, so the loss's masking is exercised.
IGNORE_FRACTION = 0.05


def bench_config(config: RunConfig, image_size: int, batch_size: int) -> RunConfig:
    """``config`` on synthetic ``image_size`` squares, ``batch_size`` per step, with no eval, checkpoints or logs.

    Model, methods, loss, optimizer, precision, compile, microbatching and ``data.synthetic_num_classes``
    are kept as configured; the pretrained weights are not loaded (they do not change the speed, and
    a recipe then runs offline).
    """
    overrides: dict[str, Any] = {
        "model": {"weights": None},
        "data": {
            "spec": "synthetic", "crop_size": image_size,
            "synthetic_image_size": image_size, "synthetic_train_size": batch_size, "synthetic_val_size": 2,
            "num_workers": 0, "persistent_workers": False,
        },
        "eval": {"size": image_size},
        "train": {
            "global_batch_size": batch_size, "duration": BENCH_DURATION, "eval_interval": None,
            "checkpoint_interval": None, "eval_at_start": False, "progress": "none",
        },
    }
    return build_config(merge_dicts(config.to_dict(), overrides), "bench settings")


def bench_trainer(config: RunConfig) -> Trainer:
    """A Trainer for ``config`` that writes nothing (no run folder)."""
    return build_trainer(config, run_dir=None)


def synthetic_batch(trainer: Trainer, image_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random uint8 image batch and class-index target of the trainer's batch, on its device."""
    batch, classes = trainer.settings.global_batch_size, len(trainer.class_names)
    images = torch.randint(0, 256, (batch, 3, image_size, image_size), dtype=torch.uint8, generator=generator)
    target = torch.randint(0, classes, (batch, image_size, image_size), generator=generator)
    ignored = torch.rand(target.shape, generator=generator) < IGNORE_FRACTION
    target[ignored] = trainer.ignore_index
    return images.to(trainer.device), target.to(trainer.device)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so a host clock read after it measures that work (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
