"""Timing alternatives against each other on a busy machine: interleaved blocks, per-round ratios.

Load from other processes drifts over seconds to minutes. Running every alternative once per round,
in a fresh random order, and comparing within each round, makes the drift hit all of them alike;
the median over rounds then drops the rounds a burst of load landed on.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Mapping

import torch

from segrecipes.bench.driver import synchronize


def time_block(step: Callable[[], None], steps: int, device: torch.device) -> float:
    """Seconds for ``steps`` calls of ``step``, the device's queue drained before and after."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return time.perf_counter() - start


def interleaved_seconds(
    blocks: Mapping[str, Callable[[], None]], rounds: int, steps: int, device: torch.device, seed: int = 0
) -> dict[str, list[float]]:
    """Per round, the seconds of ``steps`` calls of every block; each round runs the blocks in a new random order."""
    if rounds < 1 or steps < 1:
        raise ValueError(f"rounds and steps must be >= 1, got {rounds} and {steps}")
    order = random.Random(seed)
    seconds: dict[str, list[float]] = {name: [] for name in blocks}
    for _ in range(rounds):
        names = list(blocks)
        order.shuffle(names)
        for name in names:
            seconds[name].append(time_block(blocks[name], steps, device))
    return seconds


def median_ratio(seconds: list[float], reference: list[float]) -> float:
    """The median over rounds of ``seconds[r] / reference[r]``."""
    return statistics.median(mine / theirs for mine, theirs in zip(seconds, reference, strict=True))
