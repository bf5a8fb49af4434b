"""Measurement: training throughput of the real engine step, data-pipeline throughput, engine and
method overheads, and races of recipes to a target mIoU (``segrecipes bench``)."""

from __future__ import annotations

from .ceiling import matmul_tflops
from .driver import bench_config, bench_trainer, synthetic_batch
from .methods import VARIANTS, MethodCost, measure_method_costs
from .overhead import OverheadReport, engine_overhead
from .pipeline import PipelineReport, measure_pipeline
from .entries import CurvePoint
from .race.plot import write_race
from .race.run import RaceRun, race_configs, run_race
from .race.score import summarize, time_to_target
from .throughput import ThroughputReport, measure_throughput

__all__ = [
    "VARIANTS",
    "CurvePoint",
    "MethodCost",
    "OverheadReport",
    "PipelineReport",
    "RaceRun",
    "ThroughputReport",
    "bench_config",
    "bench_trainer",
    "engine_overhead",
    "matmul_tflops",
    "measure_method_costs",
    "measure_pipeline",
    "measure_throughput",
    "race_configs",
    "run_race",
    "summarize",
    "synthetic_batch",
    "time_to_target",
    "write_race",
]
