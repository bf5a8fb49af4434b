"""Write a race's files: race.json, race.csv, mIoU against wall time and the Pareto view."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segrecipes.bench.entries import spread
from segrecipes.bench.figure import new_figure, save_figure
from segrecipes.bench.race.run import RaceRun
from segrecipes.bench.race.score import race_record, summarize
from segrecipes.cache import write_csv, write_json


def write_race(out_dir: Path, runs: Sequence[RaceRun], target: float, settings: dict[str, Any]) -> dict[str, Path]:
    """Write race.json, race.csv (one row per run), race.png (mIoU against wall time) and
    race_pareto.png (final mIoU against total wall time) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "race.json", "csv": out_dir / "race.csv", "plot": out_dir / "race.png",
             "pareto": out_dir / "race_pareto.png"}
    write_json(paths["json"], race_record(runs, target, settings))
    rows = [run.row() for run in runs]
    write_csv(paths["csv"], [list(rows[0]), *(list(row.values()) for row in rows)])
    plot_race(runs, target, paths["plot"])
    plot_pareto(runs, paths["pareto"])
    return paths


def mean_curve(runs: Sequence[RaceRun]) -> tuple[list[float], list[float], list[float]]:
    """Mean wall time, mean mIoU and its sample std at each evaluation, over the evaluations all
    ``runs`` (seeds of one entry) have. Point by point: with evaluations every N steps or epochs the
    seeds are evaluated at the same steps; with a wall-clock interval only roughly at the same times."""
    length = min(len(run.curve) for run in runs)
    times, means, stds = [], [], []
    for index in range(length):
        points = [run.curve[index] for run in runs]
        miou = spread([point.miou for point in points])
        times.append(statistics.fmean(point.elapsed_s for point in points))
        means.append(miou.mean)  # type: ignore[union-attr]
        stds.append(miou.std)  # type: ignore[union-attr]
    return times, means, stds


def plot_race(runs: Sequence[RaceRun], target: float, path: Path) -> None:
    """Validation mIoU against wall time: each entry's mean over seeds with a +-1 std band, its mean
    time to target starred, the target a dashed line."""
    figure, axes, colours = new_figure()
    for index, summary in enumerate(summarize(runs)):
        colour = colours[index % len(colours)]
        times, means, stds = mean_curve([run for run in runs if run.recipe == summary.recipe])
        minutes = [seconds / 60 for seconds in times]
        label = summary.recipe + (f" ({summary.runs} seeds)" if summary.runs > 1 else "")
        axes.plot(minutes, means, marker="o", markersize=3, color=colour, label=label)
        axes.fill_between(minutes, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                          color=colour, alpha=0.2, linewidth=0)
        if summary.time_to_target_s is not None:
            axes.plot(summary.time_to_target_s.mean / 60, target, marker="*", markersize=12, color=colour)
    axes.axhline(target, color="gray", linestyle="--", label=f"target {target:.4g} mIoU")
    save_figure(figure, axes, path, "wall time (min)", "validation mIoU (%)")


def plot_pareto(runs: Sequence[RaceRun], path: Path) -> None:
    """Final mIoU against total wall time per entry (mean, +-1 std on both axes): up and left is better."""
    figure, axes, colours = new_figure(6.0, 4.0)
    for index, summary in enumerate(summarize(runs)):
        axes.errorbar(summary.wall_time_s.mean / 60, summary.final_miou.mean, xerr=summary.wall_time_s.std / 60,
                      yerr=summary.final_miou.std, marker="o", capsize=3, color=colours[index % len(colours)],
                      label=summary.recipe)
    save_figure(figure, axes, path, "total wall time (min)", "final mIoU (%)")
