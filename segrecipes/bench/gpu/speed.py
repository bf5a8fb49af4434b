"""Training throughput of the reference model on the device, cell by cell, within a time budget.

Each cell is a real Trainer (bench/driver.py) timed by :func:`~segrecipes.bench.throughput.measure_throughput`
after a few warm-up steps (where compilation happens), without the per-phase breakdown (it synchronizes).
The cells, most wanted first: the ``mild`` recipe (the goal: 250 images/s at 512x512 on one H100-class
GPU); bf16 and fp16, NCHW and channels_last on the ``baseline`` recipe (no training method); the
``medium`` and ``hot`` recipes as shipped (fp16, channels_last and their methods); mild and baseline bf16
channels_last at the largest batch that fits; then two compiled cells, mild and baseline bf16
channels_last. Compiling R-101 takes one to two minutes, so only those two: the rest of the compiled grid
would not fit in a lease. "Largest batch" is the engine's own microbatch probe (engine/microbatch.py: a forward
and backward of ``cap``, ``cap / 2``... until one fits), so it is what ``device_microbatch_size: auto``
would pick; the cell then trains at that batch (and halves its microbatch if a method needs more memory).

Before a cell starts, the budget must hold the seconds the last cell of its kind took (an estimate
before the first); a cell that does not fit, and every compiled cell where compiling is not wanted, is
recorded as skipped with the reason, never left out.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from segrecipes.bench.driver import bench_trainer, synthetic_batch
from segrecipes.bench.gpu.workload import Workload, error_line, release
from segrecipes.bench.throughput import measure_throughput
from segrecipes.data.normalize import normalize
from segrecipes.engine.microbatch import MIN_MICROBATCH, probe_microbatch

BASE_RECIPE = "baseline"
GOAL_RECIPE = "mild"
GOAL_IMAGES_PER_S = 250.0  # the issue's: mild at 512x512 on one H100-class GPU
SKIPPED_BUDGET = "skipped: time budget"


@dataclass(frozen=True)
class SweepSizes:
    """``workload``: the reference model, image size and batch; ``largest_cap``: where the largest-batch probe
    starts; ``eager_s`` / ``compiled_s``: a cell's expected seconds until one of its kind was measured;
    ``no_compile``: why compiled cells are skipped (None: they run)."""

    workload: Workload
    largest_cap: int
    warmup: int
    steps: int
    eager_s: float
    compiled_s: float
    no_compile: str | None = None


@dataclass(frozen=True)
class Cell:
    recipe: str
    precision: str | None = None  # None: the recipe's
    channels_last: bool = False  # switched on by hand; the recipes beyond baseline switch it on themselves
    compile: bool = False
    largest: bool = False  # the largest batch that fits instead of the workload's

    @property
    def name(self) -> str:
        parts = [self.recipe, *([self.precision] if self.precision else [])]
        if self.recipe == BASE_RECIPE:
            parts.append("channels_last" if self.channels_last else "NCHW")
        return " ".join([*parts, *(["compiled"] if self.compile else []), *(["largest"] if self.largest else [])])


CELLS = (
    Cell(GOAL_RECIPE),
    Cell(BASE_RECIPE, "bf16"),
    Cell(BASE_RECIPE, "bf16", channels_last=True),
    Cell(BASE_RECIPE, "fp16"),
    Cell(BASE_RECIPE, "fp16", channels_last=True),
    Cell("medium"),
    Cell("hot"),
    Cell(GOAL_RECIPE, largest=True),
    Cell(BASE_RECIPE, "bf16", channels_last=True, largest=True),
    Cell(GOAL_RECIPE, compile=True),
    Cell(BASE_RECIPE, "bf16", channels_last=True, compile=True),
)


@dataclass
class CellResult:
    cell: Cell
    status: str  # "measured", "error" or "skipped: <why>"
    batch: int | None = None
    microbatch: int | None = None  # what the trainer ended with (lower than batch: it ran out of memory)
    skipped_steps: int | None = None  # non-finite steps (fp16's grad scaler skips a few at first)
    report: dict[str, Any] = field(default_factory=dict)  # ThroughputReport.to_dict()
    error: str | None = None
    seconds: float = 0.0

    @property
    def images_per_s(self) -> float | None:
        return self.report.get("images_per_s")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.cell.name, **asdict(self)}


class TimeBudget:
    """The seconds a run may spend, counted from ``started`` (a ``time.perf_counter()`` reading)."""

    def __init__(self, seconds: float, started: float) -> None:
        self.seconds, self.started = seconds, started

    def allows(self, estimate_s: float) -> bool:
        """Whether ``estimate_s`` more seconds stay within the budget."""
        return time.perf_counter() - self.started + estimate_s <= self.seconds


def _settings(cell: Cell) -> tuple[list[str], list[str]]:
    """The cell's ``--set`` overrides and ``--methods`` switches."""
    overrides = [f"train.precision={cell.precision}"] if cell.precision else []
    if cell.compile:
        overrides.append("train.compile=true")
    return overrides, ["channels_last"] if cell.channels_last else []


def largest_batch(sizes: SweepSizes, cell: Cell) -> int:
    """The engine's microbatch probe on the cell's model: the first of cap, cap / 2... whose forward and
    backward fit (a CPU never runs out of GPU memory: the cap)."""
    overrides, methods = _settings(cell)
    trainer = bench_trainer(sizes.workload.config(cell.recipe, overrides, methods, batch=MIN_MICROBATCH))
    images, target = synthetic_batch(trainer, sizes.workload.image_size, torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "device microbatch lowered to ..." at every halving
        return probe_microbatch(trainer.model, trainer.loss_fn, normalize(images[0]), target[0], sizes.largest_cap,
                                trainer.amp_dtype, trainer.buffers)


def measure_cell(sizes: SweepSizes, cell: Cell) -> CellResult:
    batch = sizes.workload.batch
    if cell.largest:
        batch = largest_batch(sizes, cell)
        release(sizes.workload.device)
    overrides, methods = _settings(cell)
    config = sizes.workload.config(cell.recipe, overrides, methods, batch=batch)
    trainer = bench_trainer(config)
    report = measure_throughput(trainer, config, sizes.steps, sizes.warmup, breakdown=False)
    return CellResult(cell, "measured", batch, trainer.microbatch, int(trainer.skips.total), report.to_dict())


def run_sweep(sizes: SweepSizes, budget: TimeBudget) -> Iterator[CellResult]:
    """Every cell in turn, each on its own (an error is recorded), skipping what the budget cannot hold."""
    last_s: dict[bool, float] = {False: sizes.eager_s, True: sizes.compiled_s}
    for cell in CELLS:
        if cell.compile and sizes.no_compile:
            yield CellResult(cell, f"skipped: {sizes.no_compile}")
            continue
        if not budget.allows(last_s[cell.compile]):
            yield CellResult(cell, SKIPPED_BUDGET)
            continue
        start = time.perf_counter()
        try:
            result = measure_cell(sizes, cell)
        except Exception as error:  # a failing cell must not stop the sweep
            result = CellResult(cell, "error", error=error_line(error))
        finally:
            release(sizes.workload.device)
        result.seconds = time.perf_counter() - start
        if result.status == "measured":  # a cell that failed fast says nothing of how long the next one takes
            last_s[cell.compile] = result.seconds
        yield result
