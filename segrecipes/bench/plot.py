"""The race plot: validation mIoU against wall time, one colour per recipe, the target as a line."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure state

if TYPE_CHECKING:
    from segrecipes.bench.race import RaceRun


def plot_race(runs: Sequence[RaceRun], target: float, path: Path) -> None:
    """Every run as a line (seeds of a recipe share its colour and one legend entry), reach points starred."""
    figure = Figure(figsize=(7, 4.5))
    axes = figure.subplots()
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    recipes = list(dict.fromkeys(run.recipe for run in runs))
    labelled: set[str] = set()
    for run in runs:
        colour = colours[recipes.index(run.recipe) % len(colours)]
        label = None if run.recipe in labelled else run.recipe
        labelled.add(run.recipe)
        times = [point.elapsed_s / 60 for point in run.curve]
        axes.plot(times, [point.miou for point in run.curve], marker="o", markersize=3, color=colour, label=label)
        if run.reached is not None:
            axes.plot(run.reached.elapsed_s / 60, run.reached.miou, marker="*", markersize=12, color=colour)
    axes.axhline(target, color="gray", linestyle="--", label=f"target {target:g} mIoU")
    axes.set_xlabel("wall time (min)")
    axes.set_ylabel("validation mIoU (%)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
