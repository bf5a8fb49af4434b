"""Engine overhead: the full engine step against a bare PyTorch loop on the same model and data.

The bare loop is what a user would write by hand: zero the gradients, forward under autocast, the same
loss, backward, the same optimizer step (through the grad scaler under fp16). It gets its batch
already normalized, as if a DataLoader had done it, so normalizing on the device counts against the
engine. Blocks of the two are interleaved (see interleave.py); the ratio is the median of the
per-round ratios.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

import torch

from segrecipes.bench.interleave import interleaved_seconds, median_ratio
from segrecipes.config import ConfigError
from segrecipes.data.normalize import normalize
from segrecipes.engine.trainer import Trainer

# The one method that changes only the memory layout: the bare loop then uses the same layout.
LAYOUT_METHOD = "channels_last"
ENGINE_OVERHEAD_TARGET = 1.03


@dataclass
class OverheadReport:
    engine_images_per_s: float
    bare_images_per_s: float
    ratio: float
    target: float
    rounds: int
    steps_per_round: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bare_step(trainer: Trainer, images: torch.Tensor, target: torch.Tensor) -> None:
    """One hand-written training step with the trainer's model, loss, optimizer and precision."""
    optimizer, scaler = trainer.optimizer, trainer.scaler
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(images.device.type, dtype=trainer.amp_dtype, enabled=trainer.amp_dtype is not None):
        logits = trainer.forward(images)
    loss = trainer.loss_fn(logits, target)
    if scaler is None:
        loss.backward()
        optimizer.step()
        return
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def engine_overhead(
    trainer: Trainer, images: torch.Tensor, target: torch.Tensor, rounds: int = 4, steps_per_round: int = 5
) -> OverheadReport:
    """Compare ``trainer.step`` with :func:`bare_step` on uint8 ``images`` and index ``target`` on the device."""
    extra = [method.name for method in trainer.methods if method.name != LAYOUT_METHOD]
    if extra:
        raise ConfigError(f"engine overhead: compare without training methods (enabled: {', '.join(extra)})")
    bare_images = normalize(images)
    for method in trainer.methods:  # channels_last only: the same input layout as the engine's
        bare_images, _ = method.transform_batch(trainer.context(), bare_images, target)

    def engine() -> None:
        trainer.step(images, target)

    def bare() -> None:
        bare_step(trainer, bare_images, target)

    engine()  # warm both paths
    bare()
    seconds = interleaved_seconds({"engine": engine, "bare": bare}, rounds, steps_per_round, trainer.device)
    images_per_block = len(images) * steps_per_round
    return OverheadReport(
        engine_images_per_s=images_per_block / statistics.median(seconds["engine"]),
        bare_images_per_s=images_per_block / statistics.median(seconds["bare"]),
        ratio=median_ratio(seconds["engine"], seconds["bare"]), target=ENGINE_OVERHEAD_TARGET, rounds=rounds,
        steps_per_round=steps_per_round,
    )
