"""Engine overhead: the full engine step against a bare PyTorch loop on the same model and data.

The bare loop is what a user would write by hand: zero the gradients, forward under autocast, the same
loss, backward, the same optimizer step (through the grad scaler under fp16). It gets its batch
already normalized, as if a DataLoader had done it, so normalizing on the device counts against the
engine. Blocks of each alternate, in swapped order every round, so drift in the machine's load hits
both alike; the ratio is the median of the per-round ratios.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from segrecipes.bench.driver import engine_step, synchronize
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


def _block_seconds(step: Callable[[], None], steps: int, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return time.perf_counter() - start


def engine_overhead(
    trainer: Trainer, images: torch.Tensor, target: torch.Tensor, rounds: int = 4, steps_per_round: int = 5
) -> OverheadReport:
    """Compare ``engine_step`` with :func:`bare_step` on uint8 ``images`` and index ``target`` on the device."""
    extra = [method.name for method in trainer.methods if method.name != LAYOUT_METHOD]
    if extra:
        raise ConfigError(f"engine overhead: compare without training methods (enabled: {', '.join(extra)})")
    if rounds < 1 or steps_per_round < 1:
        raise ValueError(f"rounds and steps_per_round must be >= 1, got {rounds} and {steps_per_round}")
    bare_images = normalize(images)
    for method in trainer.methods:  # channels_last only: the same input layout as the engine's
        bare_images, _ = method.transform_batch(bare_images, target)

    def engine() -> None:
        engine_step(trainer, images, target)

    def bare() -> None:
        bare_step(trainer, bare_images, target)

    engine()  # warm both paths
    bare()
    engine_times, bare_times = [], []
    for index in range(rounds):
        order = [(engine, engine_times), (bare, bare_times)]
        for step, times in order if index % 2 == 0 else reversed(order):
            times.append(_block_seconds(step, steps_per_round, trainer.device))
    ratio = statistics.median(e / b for e, b in zip(engine_times, bare_times))
    batch = len(images)
    return OverheadReport(
        engine_images_per_s=batch * steps_per_round / statistics.median(engine_times),
        bare_images_per_s=batch * steps_per_round / statistics.median(bare_times),
        ratio=ratio, target=ENGINE_OVERHEAD_TARGET, rounds=rounds, steps_per_round=steps_per_round,
    )
