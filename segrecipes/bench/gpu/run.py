"""``segrecipes bench gpu``: everything that needs a GPU, in one run that ends within about 8 minutes on one
H100/H200, so that a short GPU lease runs it in one go::

    segrecipes bench gpu --out gpu-results

It writes ``gpu-results/gpu_check.json`` and ``gpu_check.md`` (rewritten after every check and cell, so a
lease cut short still leaves what was done) and exits with 1 if a correctness check failed. In order:
the correctness checks (checks.py, always all of them, about 1.5 minutes), the data pipeline
(data.py, about half a minute; before the throughput so that a lease cut short loses throughput
cells, never the whole section), then the training throughput (speed.py: no cell starts that is
expected to end past ``--budget-s`` seconds from the start, 420 by default); whether the data pipeline
feeds the GPU is judged against the fastest mild cell. ``--smoke`` runs the same code on a CPU at tiny
sizes in under a minute; tests/bench/test_bench_gpu.py runs it, so the script cannot rot.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape

from segrecipes.bench.gpu.checks import CheckSizes, run_checks
from segrecipes.bench.gpu.data import DataSizes, measure_data
from segrecipes.bench.gpu.report import (
    JSON_FILE,
    MARKDOWN_FILE,
    GpuRecord,
    correctness_section,
    data_section,
    print_section,
    print_setting,
    throughput_section,
    write_record,
)
from segrecipes.bench.gpu.speed import SweepSizes, TimeBudget, run_sweep
from segrecipes.bench.gpu.workload import Workload, error_line
from segrecipes.bench.threads import torch_threads
from segrecipes.bench.throughput import device_name
from segrecipes.config import ConfigError

# DeepLabv3+ as the recipes train it; a ResNet-18 one that compiles in well under a minute on a GPU; a
# tiny one for a CPU.
REFERENCE = ("model.backbone=resnet101", "model.output_stride=8", "model.head_channels=512")
SMALL = ("model.backbone=resnet18", "model.output_stride=16", "model.head_channels=128")
TINY = ("model.backbone=resnet18", "model.output_stride=16", "model.head_channels=16")


@dataclass(frozen=True)
class Profile:
    checks: CheckSizes
    sweep: SweepSizes
    data: DataSizes
    threads: int | None = None  # torch's CPU threads during the run (None: as they are)


# On a GPU the out-of-memory check trains R-101 OS8 on 256 images of 512x512 at once: at over 1 GB of
# activations an image that is more than any single GPU holds, so it runs out of memory for real.
LEASE = Profile(
    CheckSizes(Workload("cuda", SMALL, 256, 8), oom=Workload("cuda", REFERENCE, 512, 256), steps=3,
               compile_rtol=1e-2),
    SweepSizes(Workload("cuda", REFERENCE, 512, 16), largest_cap=256, warmup=3, steps=10, eager_s=20, compiled_s=150),
    DataSizes(workers=(4, 8, 16), unique=64, height=512, width=683, crop=512, batch=16, batches_per_worker=16),
)
SMOKE = Profile(
    CheckSizes(Workload("cpu", TINY, 32, 4), oom=Workload("cpu", TINY, 32, 4), steps=3, compile_rtol=1e-4),
    SweepSizes(Workload("cpu", TINY, 64, 2), largest_cap=4, warmup=1, steps=2, eager_s=5, compiled_s=120,
               no_compile="DeepLabv3+ takes minutes to compile on a CPU (the checks compile a small net)"),
    DataSizes(workers=(0, 1), unique=4, height=96, width=128, crop=64, batch=2, batches_per_worker=3),
    threads=1,  # on a shared 2-core machine two threads collapse under load (BENCHMARKS.md); tiny tensors need one
)


def run_gpu(out: Path, smoke: bool, budget_s: float, console: Console) -> GpuRecord:
    """Run every section into the folder ``out``; the record says what passed, what was measured, what was skipped."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"bench gpu: --out {out} exists and is not a folder")
    if budget_s <= 0:
        raise ConfigError(f"bench gpu: --budget-s must be positive, got {budget_s:g}")
    if not smoke and not torch.cuda.is_available():
        raise ConfigError("bench gpu: no GPU is visible (on a CPU, run it with --smoke)")
    out.mkdir(parents=True, exist_ok=True)
    profile = SMOKE if smoke else LEASE
    with torch_threads(profile.threads):
        return _run(profile, out, smoke, budget_s, console)


def _run(profile: Profile, out: Path, smoke: bool, budget_s: float, console: Console) -> GpuRecord:
    started = time.perf_counter()
    record = GpuRecord(device_name(torch.device(profile.checks.workload.device)), torch.__version__,
                       time.strftime("%Y-%m-%d %H:%M:%S %Z"), smoke, budget_s)

    def save() -> None:
        record.seconds = time.perf_counter() - started
        write_record(record, out)

    save()
    for check in run_checks(profile.checks):
        record.correctness.append(check)
        console.print(escape(f"check {check.name}: {check.status} ({check.seconds:.1f} s)"))
        save()
    print_section(correctness_section(record), console)
    with tempfile.TemporaryDirectory(prefix="segrecipes-gpu-data-") as folder:
        try:
            record.data_files, record.data = measure_data(Path(folder), profile.data)
        except Exception as error:  # the other sections run and stay recorded
            record.data_error = error_line(error)
    save()
    for cell in run_sweep(profile.sweep, TimeBudget(budget_s, started)):
        record.throughput.append(cell)
        speed = f", {cell.images_per_s:.1f} images/s" if cell.images_per_s else ""
        console.print(escape(f"cell {cell.cell.name}: {cell.error or cell.status}{speed} ({cell.seconds:.0f} s)"))
        save()
    print_section(throughput_section(record), console)
    record.finished = True
    save()
    print_section(data_section(record), console)
    print_setting(record, console)
    console.print(escape(f"wrote {out / JSON_FILE} and {out / MARKDOWN_FILE}"))
    return record
