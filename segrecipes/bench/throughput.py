"""Training throughput of the real engine step on synthetic batches: images/s, where the time goes,
peak memory, FLOPs and the fraction of the device's measured matmul ceiling that the step achieves.

FLOPs follow the model-FLOPs convention: a training step costs 3x the forward (forward, and a
backward of twice its cost) per image, whatever a method adds on top (SAM's second pass is overhead,
not useful work), so "achieved TFLOP/s" compares recipes on the same footing.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from segrecipes.bench.ceiling import matmul_tflops
from segrecipes.bench.driver import synchronize, synthetic_batch
from segrecipes.bench.phases import PhaseClock, StepProbes
from segrecipes.config import ConfigError, RunConfig
from segrecipes.engine.trainer import Trainer
from segrecipes.models.flops import forward_flops

TRAIN_FLOPS_PER_FORWARD = 3
# Distinct batches cycled through, so no step sees exactly the tensors of the one before.
BATCH_POOL = 2


@dataclass
class ThroughputReport:
    """One throughput measurement; ``breakdown_ms`` (mean per step) sums to ``step_ms`` when present."""

    device: str
    model: str
    backbone: str
    image_size: int
    batch_size: int
    precision: str
    methods: list[str]
    loss: str
    classes: int
    compile: bool
    steps: int
    warmup: int
    step_ms: float
    images_per_s: float
    breakdown_ms: dict[str, float]
    peak_memory_mb: float
    peak_memory_kind: str
    forward_gflops_per_image: float
    train_gflops_per_image: float
    achieved_tflops: float
    matmul_ceiling_tflops: float
    utilization: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def _reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def process_peak_rss_mb() -> float:
    """This process's peak resident size so far, in MiB.

    Linux's ``VmHWM`` where there is one: ``getrusage``'s maximum is carried over fork and exec, so a
    freshly spawned process would report its parent's resident size at the fork if that was larger.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10
    kilobytes_or_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kilobytes_or_bytes / 2**20 if sys.platform == "darwin" else kilobytes_or_bytes / 2**10


def _peak_memory(device: torch.device) -> tuple[float, str]:
    """Peak since the reset on a GPU (tensors only); on a CPU the whole process's peak resident size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda max allocated"
    return process_peak_rss_mb(), "process peak RSS"


def measure_throughput(
    trainer: Trainer, config: RunConfig, steps: int, warmup: int, breakdown: bool = True
) -> ThroughputReport:
    """Time ``steps`` steps of ``trainer`` (built from ``config`` by :func:`~segrecipes.bench.driver.bench_config`)
    after ``warmup`` untimed ones (compilation, allocator, EMA's first copy)."""
    if steps < 1 or warmup < 0:
        raise ConfigError(f"bench throughput: --steps must be >= 1 and --warmup >= 0 (got {steps} and {warmup})")
    device, cfg = trainer.device, config
    size = cfg.data.synthetic_image_size
    generator = torch.Generator().manual_seed(cfg.train.seed)
    batches = [synthetic_batch(trainer, size, generator) for _ in range(BATCH_POOL)]
    for index in range(warmup):
        trainer.step(*batches[index % BATCH_POOL])
    synchronize(device)
    _reset_peak_memory(device)

    clock = PhaseClock(device)
    start = time.perf_counter()
    if breakdown:
        with StepProbes(trainer, clock):
            for index in range(steps):
                clock.switch("data")
                images, target = batches[index % BATCH_POOL]
                clock.switch("methods")
                trainer.step(images, target)
            clock.switch(None)
    else:
        for index in range(steps):
            trainer.step(*batches[index % BATCH_POOL])
    synchronize(device)
    seconds = time.perf_counter() - start

    batch = cfg.train.global_batch_size
    images_per_s = steps * batch / seconds
    forward = forward_flops(trainer.model, size, size)
    train_flops = TRAIN_FLOPS_PER_FORWARD * forward
    achieved = train_flops * images_per_s / 1e12
    ceiling = matmul_tflops(device, trainer.amp_dtype or torch.float32)
    peak, peak_kind = _peak_memory(device)
    return ThroughputReport(
        device=device_name(device), model=cfg.model.name, backbone=cfg.model.backbone, image_size=size,
        batch_size=batch, precision=str(trainer.amp_dtype or torch.float32).removeprefix("torch."),
        methods=[method.name for method in trainer.methods],
        loss=f"CE {trainer.loss_fn.ce_weight:g} + Dice {trainer.loss_fn.dice_weight:g}",
        classes=len(trainer.class_names),
        compile=cfg.train.compile, steps=steps, warmup=warmup, step_ms=1000 * seconds / steps,
        images_per_s=images_per_s,
        breakdown_ms={phase: 1000 * value / steps for phase, value in clock.seconds.items()} if breakdown else {},
        peak_memory_mb=peak, peak_memory_kind=peak_kind, forward_gflops_per_image=forward / 1e9,
        train_gflops_per_image=train_flops / 1e9, achieved_tflops=achieved, matmul_ceiling_tflops=ceiling,
        utilization=achieved / ceiling,
    )
