"""What the sections of ``segrecipes bench gpu`` train, and what they do between two checks or cells.

A :class:`Workload` is a DeepLabv3+ at an image size and batch on a device, turned into a benchmark
config (:func:`~segrecipes.bench.driver.bench_config`: synthetic data at ADE20k's 150 classes, no
weights, eval or logs) from a recipe plus overrides, exactly as ``bench throughput`` builds one. Each
check or cell runs on its own: its error is kept as one line and the device's memory (and compiled
graphs) are released before the next one starts.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from segrecipes.bench.driver import LITERAL, bench_config
from segrecipes.config import RunConfig, load_config

CLASSES = 150  # ADE20k's


@dataclass(frozen=True)
class Workload:
    """``model``: ``model.*`` overrides; ``device``: ``train.device``; ``batch``: images per step."""

    device: str
    model: tuple[str, ...]
    image_size: int
    batch: int

    def config(self, recipe: str | None = None, overrides: Sequence[str] = (), methods: Sequence[str] = (),
               batch: int | None = None) -> RunConfig:
        """``recipe`` (None: the defaults) with ``overrides`` and ``methods`` on this model, size and batch."""
        base = [LITERAL, f"train.device={self.device}", f"data.synthetic_num_classes={CLASSES}", *self.model, *overrides]
        return bench_config(load_config(recipe, None, base, list(methods)), self.image_size, batch or self.batch)


def error_line(error: BaseException) -> str:
    """``Type: first line of the message``, for a record that must stay readable."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}".strip().rstrip(":")


def release(device: str) -> None:
    """Free what the last check or cell left: its tensors, cached GPU blocks and compiled graphs."""
    gc.collect()
    torch.compiler.reset()
    if device == "cuda":
        torch.cuda.empty_cache()
