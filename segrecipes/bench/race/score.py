"""Score a race: each run's time to the target and its mIoU at the first entry's wall time, and the
summary per entry over seeds."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from segrecipes.bench.entries import CurvePoint, Spread, spread
from segrecipes.bench.race.run import RaceRun

BASELINE_TARGET = "baseline"


@dataclass
class RecipeSummary:
    recipe: str
    runs: int
    reached: int
    time_to_target_s: Spread | None
    images_to_target: Spread | None
    final_miou: Spread
    images_per_s: Spread
    wall_time_s: Spread
    speedup: float | None  # mean time to target of the first recipe / this one's
    miou_at_reference_time: Spread | None = field(default=None)


def miou_at(curve: Sequence[CurvePoint], seconds: float) -> float | None:
    """The mIoU of the last evaluation at or before ``seconds`` of wall time (None: none was that early)."""
    earlier = [point for point in curve if point.elapsed_s <= seconds]
    return max(earlier, key=lambda point: point.elapsed_s).miou if earlier else None


def time_to_target(curve: Sequence[CurvePoint], target: float) -> CurvePoint | None:
    """The earliest evaluation (by wall time) with mIoU >= ``target``, or None if none reached it."""
    return next((point for point in sorted(curve, key=lambda p: p.elapsed_s) if point.miou >= target), None)


def resolve_target(runs: Sequence[RaceRun], target: float | str) -> float:
    """A number, or ``baseline``: the first entry's mean final mIoU on its validation curve."""
    if target != BASELINE_TARGET:
        return float(target)
    first = [run for run in runs if run.recipe == runs[0].recipe]
    return statistics.fmean(run.curve[-1].miou for run in first)


def score(runs: Sequence[RaceRun], target: float | str) -> float:
    """Set each run's time to ``target`` and its mIoU at the first entry's mean wall time; returns the
    target as a number."""
    value = resolve_target(runs, target)
    reference_s = statistics.fmean(run.wall_time_s for run in runs if run.recipe == runs[0].recipe)
    for run in runs:
        run.reached = time_to_target(run.curve, value)
        run.miou_at_reference_time = miou_at(run.curve, reference_s)
    return value


def summarize(runs: Sequence[RaceRun]) -> list[RecipeSummary]:
    """One summary per recipe, in race order; speedups are relative to the first recipe."""
    recipes = list(dict.fromkeys(run.recipe for run in runs))
    summaries = []
    for recipe in recipes:
        mine = [run for run in runs if run.recipe == recipe]
        reached = [run.reached for run in mine if run.reached is not None]
        summaries.append(RecipeSummary(
            recipe=recipe, runs=len(mine), reached=len(reached),
            time_to_target_s=spread([point.elapsed_s for point in reached]),
            images_to_target=spread([point.samples for point in reached]),
            final_miou=spread([run.final_miou for run in mine]),
            images_per_s=spread([run.images_per_s for run in mine]),
            wall_time_s=spread([run.wall_time_s for run in mine]),
            speedup=None,
            miou_at_reference_time=spread([run.miou_at_reference_time for run in mine
                                            if run.miou_at_reference_time is not None]),
        ))
    reference = summaries[0].time_to_target_s if summaries else None
    for summary in summaries:
        if reference is not None and summary.time_to_target_s is not None:
            summary.speedup = reference.mean / summary.time_to_target_s.mean
    return summaries


def race_record(runs: Sequence[RaceRun], target: float, settings: dict[str, Any]) -> dict[str, Any]:
    """Everything race.json holds: the settings, each recipe's summary and every run with its curve."""
    return {
        "target_miou": target,
        "settings": settings,
        "recipes": [asdict(summary) for summary in summarize(runs)],
        "runs": [asdict(run) for run in runs],
    }


