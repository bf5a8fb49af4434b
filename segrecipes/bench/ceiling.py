"""The device's measured matmul ceiling: the TFLOP/s that "utilization" is a fraction of.

A large square matmul in the run's compute dtype (bf16 or fp16 under autocast on a GPU, fp32 on a
CPU) is about the best a device does on real work, and it is measured, not read from a datasheet,
so clocks, power limits and MIG slices are accounted for.
"""

from __future__ import annotations

import time

import torch

from segrecipes.bench.driver import synchronize

GPU_MATMUL_SIZE = 8192
CPU_MATMUL_SIZE = 1024


def matmul_tflops(device: torch.device, dtype: torch.dtype, size: int | None = None, repeats: int = 10) -> float:
    """Best-of-``repeats`` TFLOP/s of a ``size`` x ``size`` matmul (2 size^3 FLOPs) on ``device`` in ``dtype``."""
    size = size or (GPU_MATMUL_SIZE if device.type == "cuda" else CPU_MATMUL_SIZE)
    generator = torch.Generator(device=device).manual_seed(0)
    left = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    right = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    torch.matmul(left, right)  # warm-up: library selection, clocks
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        torch.matmul(left, right)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e12
