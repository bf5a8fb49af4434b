"""Each training method's cost as a ratio to a plain cross-entropy step, measured in one run.

Every variant is a real Trainer (same model, seed and synthetic batch); blocks of steps of all
variants are interleaved in a random order per round and each round's block times are divided by
that round's plain block, so machine-load drift cancels (see interleave.py). Blocks are a multiple of
10 steps, so "EMA every 10 batches" and "SAM every 2nd step" do their share of work in every block.
The class count matters: Dice's per-class statistics and MixUp's dense target grow with it, so
``classes=150`` measures what ADE20k costs.

Peak memory is measured per variant apart from the timing: on a GPU the peak of tensors allocated
while the variant is built and takes its first steps (above what was allocated before); on a CPU the
peak resident size of a fresh process that builds the variant and takes two steps.
"""

from __future__ import annotations

import multiprocessing
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from segrecipes.bench.driver import bench_config, bench_trainer, synthetic_batch
from segrecipes.bench.interleave import interleaved_seconds
from segrecipes.bench.throughput import process_peak_rss_mb
from segrecipes.config import ConfigError, load_config
from segrecipes.engine.distributed import pick_device

PLAIN = "plain step (CE)"
STEPS_MULTIPLE = 10


@dataclass(frozen=True)
class Variant:
    name: str
    methods: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()
    target: float | None = None  # the most this variant may cost, as a ratio to the plain step


VARIANTS = (
    Variant(PLAIN),
    Variant("EMA every 10 batches", ("ema",), ("ema.update_interval=10",), 1.02),
    Variant("EMA every batch", ("ema",), ("ema.update_interval=1",), 1.03),
    Variant("Dice+CE", (), ("loss.name=dice_ce",), 1.05),
    Variant("MixUp (CE)", ("mixup",), (), 1.05),
    Variant("MixUp+Dice+CE", ("mixup",), ("loss.name=dice_ce",), 1.08),
    Variant("SAM every 2nd step", ("sam",), ("sam.interval=2",), 1.52),
    Variant("SAM every step", ("sam",), ("sam.interval=1",), 2.03),
)


@dataclass
class MethodCost:
    name: str
    ms_per_step: float  # median over rounds
    ratio: float  # median over rounds of (this block / the plain block)
    ratio_min: float
    ratio_max: float
    target: float | None
    peak_memory_mb: float | None  # see the module docstring; None when not measured

    @property
    def within(self) -> bool | None:
        return None if self.target is None else self.ratio <= self.target

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "within": self.within}


def _variant_trainer(base_overrides: Sequence[str], variant: Variant, image_size: int, batch_size: int):
    config = load_config(None, None, [*base_overrides, *variant.overrides], list(variant.methods))
    trainer = bench_trainer(bench_config(config, image_size, batch_size))
    images, target = synthetic_batch(trainer, image_size, torch.Generator().manual_seed(0))  # one batch for all
    return trainer, images, target


def _peak_rss_of_two_steps(base_overrides: Sequence[str], variant: Variant, image_size: int, batch_size: int,
                           threads: int) -> float:
    """Run in a fresh process: its peak resident size after building ``variant`` and taking two steps."""
    torch.set_num_threads(threads)
    trainer, images, target = _variant_trainer(base_overrides, variant, image_size, batch_size)
    for _ in range(2):
        trainer.step(images, target)
    return process_peak_rss_mb()


def measure_method_costs(
    base_overrides: Sequence[str], image_size: int, batch_size: int, rounds: int, steps: int,
    variants: Sequence[Variant] = VARIANTS, memory: bool = True,
) -> tuple[list[MethodCost], torch.device]:
    """The cost of every variant on the model of ``base_overrides``; the first variant is the reference."""
    if steps % STEPS_MULTIPLE:
        raise ConfigError(f"bench methods: --steps must be a multiple of {STEPS_MULTIPLE}, got {steps}")
    blocks, peaks = {}, {}
    device = pick_device(load_config(None, None, list(base_overrides)).train.device)
    on_gpu = device.type == "cuda"
    if memory and not on_gpu:  # first, while this process is small (its children start as big)
        spawn = multiprocessing.get_context("spawn")
        with spawn.Pool(1, maxtasksperchild=1) as pool:
            for variant in variants:
                peaks[variant.name] = pool.apply(_peak_rss_of_two_steps, (list(base_overrides), variant, image_size,
                                                                          batch_size, torch.get_num_threads()))
    for variant in variants:
        before = torch.cuda.memory_allocated(device) if on_gpu else 0
        if on_gpu:
            torch.cuda.reset_peak_memory_stats(device)
        trainer, images, target = _variant_trainer(base_overrides, variant, image_size, batch_size)

        def step(trainer=trainer, images=images, target=target) -> None:
            trainer.step(images, target)

        for _ in range(steps):  # warm-up, and EMA's first copy; keeps blocks aligned to 10 steps
            step()
        if memory and on_gpu:
            peaks[variant.name] = (torch.cuda.max_memory_allocated(device) - before) / 2**20
        blocks[variant.name] = step
    seconds = interleaved_seconds(blocks, rounds, steps, device)
    plain = seconds[variants[0].name]
    costs = []
    for variant in variants:
        ratios = [mine / theirs for mine, theirs in zip(seconds[variant.name], plain)]
        costs.append(MethodCost(variant.name, 1000 * statistics.median(seconds[variant.name]) / steps,
                                statistics.median(ratios), min(ratios), max(ratios), variant.target,
                                peaks.get(variant.name)))
    return costs, device
