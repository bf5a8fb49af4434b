"""Race recipes to a target mIoU: wall time and images seen until each first reaches it.

Each recipe trains for its configured duration times ``scale`` with the same data, overrides and
evaluation interval (the shortest scaled duration split into ``evals`` parts, so evaluation costs
every recipe the same per unit of training). Wall time is the trainer's ``elapsed_s`` at each
evaluation: training, earlier evaluations and checkpoints, as a user waits for them.

Only durations are scaled: intervals counted in batches (EMA half-life, SAM interval) are not, so a
short race should scale ``ema.half_life`` too (``--set`` applies to every recipe).

A recipe reaches the target at the first evaluation whose mIoU is at least the target: nothing is
known between two evaluations, so no interpolation. Over several seeds each figure is reported as
mean and sample standard deviation; time to target over the seeds that reached it.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from segrecipes.config import ConfigError, Duration, RunConfig, load_config
from segrecipes.run import build_trainer

METRICS_FILE = "metrics.jsonl"


@dataclass(frozen=True)
class CurvePoint:
    """One evaluation of a run."""

    step: int
    samples: int
    elapsed_s: float
    miou: float


@dataclass
class RaceRun:
    recipe: str
    seed: int
    run_dir: str
    curve: list[CurvePoint]
    final_miou: float
    images_per_s: float
    wall_time_s: float
    reached: CurvePoint | None

    def row(self) -> dict[str, Any]:
        """The flat record of race.csv."""
        reached = self.reached
        return {
            "recipe": self.recipe, "seed": self.seed, "reached": reached is not None,
            "time_to_target_s": reached.elapsed_s if reached else None,
            "images_to_target": reached.samples if reached else None,
            "steps_to_target": reached.step if reached else None,
            "final_miou": self.final_miou, "images_per_s": self.images_per_s, "wall_time_s": self.wall_time_s,
            "run_dir": self.run_dir,
        }


@dataclass
class Spread:
    mean: float
    std: float


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


def read_curve(run_dir: Path) -> list[CurvePoint]:
    """The evaluation rows of a run's metrics.jsonl, in the order they were logged."""
    rows = [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines() if line.strip()]
    return [CurvePoint(row["step"], row["samples"], row["elapsed_s"], row["miou"]) for row in rows if "miou" in row]


def time_to_target(curve: Sequence[CurvePoint], target: float) -> CurvePoint | None:
    """The earliest evaluation (by wall time) with mIoU >= ``target``, or None if none reached it."""
    return next((point for point in sorted(curve, key=lambda p: p.elapsed_s) if point.miou >= target), None)


def scale_duration(duration: Duration, scale: float) -> Duration:
    """``duration`` times ``scale``; batches stay whole (at least one)."""
    if scale <= 0:
        raise ConfigError(f"--scale must be positive, got {scale}")
    value = duration.value * scale
    if duration.unit == "ba":
        value = max(1, round(value))
    return Duration(value, duration.unit)


def shared_eval_interval(durations: Sequence[Duration], evals: int) -> Duration:
    """The shortest of ``durations`` divided into ``evals`` parts, used for every recipe alike."""
    if evals < 1:
        raise ConfigError(f"--evals must be >= 1, got {evals}")
    units = sorted({duration.unit for duration in durations})
    if len(units) > 1:
        raise ConfigError(f"bench race: the recipes' durations mix units {units}; give --eval-every")
    shortest = min(duration.value for duration in durations) / evals
    return Duration(max(1, round(shortest)) if units[0] == "ba" else shortest, units[0])


def _parse_interval(text: str) -> Duration:
    try:
        return Duration.parse(text)
    except ConfigError as error:
        raise ConfigError(f"--eval-every: {error}") from None


def race_configs(
    recipes: Sequence[str],
    data: str,
    scale: float = 1.0,
    seeds: int = 1,
    overrides: Sequence[str] = (),
    evals: int = 10,
    eval_every: str | None = None,
) -> list[tuple[str, int, RunConfig]]:
    """``(recipe, seed, config)`` for every run, seed by seed so drifting machine load hits all recipes alike."""
    if not recipes or seeds < 1:
        raise ConfigError(f"bench race: need at least one recipe and one seed (got {list(recipes)}, seeds={seeds})")
    shared = [f"data.spec={data}", *overrides]
    base = {recipe: load_config(recipe, overrides=shared) for recipe in recipes}
    durations = {recipe: scale_duration(config.train.duration, scale) for recipe, config in base.items()}
    interval = _parse_interval(eval_every) if eval_every else shared_eval_interval(list(durations.values()), evals)
    plan = []
    for offset in range(seeds):
        for recipe, config in base.items():
            seed = config.train.seed + offset
            timing = [f"train.duration={durations[recipe]}", f"train.eval_interval={interval}", f"train.seed={seed}"]
            plan.append((recipe, seed, load_config(recipe, overrides=[*shared, *timing])))
    return plan


def run_race(plan: Sequence[tuple[str, int, RunConfig]], out_dir: Path, target: float) -> list[RaceRun]:
    """Train every planned run in ``out_dir/runs/<recipe>-seed<seed>`` and read its curve back."""
    runs = []
    for recipe, seed, config in plan:
        run_dir = out_dir / "runs" / f"{recipe}-seed{seed}"
        if run_dir.exists() and any(run_dir.iterdir()):
            raise ConfigError(f"--out {out_dir}: {run_dir} already holds a run; choose a new --out folder")
        summary = build_trainer(config, run_dir).fit()
        curve = read_curve(run_dir)
        runs.append(RaceRun(
            recipe=recipe, seed=seed, run_dir=str(run_dir), curve=curve, final_miou=summary["miou"],
            images_per_s=summary["train_images_per_s"], wall_time_s=summary["elapsed_s"],
            reached=time_to_target(curve, target),
        ))
    return runs


def _spread(values: Sequence[float]) -> Spread | None:
    if not values:
        return None
    return Spread(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(runs: Sequence[RaceRun]) -> list[RecipeSummary]:
    """One summary per recipe, in race order; speedups are relative to the first recipe."""
    recipes = list(dict.fromkeys(run.recipe for run in runs))
    summaries = []
    for recipe in recipes:
        mine = [run for run in runs if run.recipe == recipe]
        reached = [run.reached for run in mine if run.reached is not None]
        summaries.append(RecipeSummary(
            recipe=recipe, runs=len(mine), reached=len(reached),
            time_to_target_s=_spread([point.elapsed_s for point in reached]),
            images_to_target=_spread([point.samples for point in reached]),
            final_miou=_spread([run.final_miou for run in mine]),
            images_per_s=_spread([run.images_per_s for run in mine]),
            wall_time_s=_spread([run.wall_time_s for run in mine]),
            speedup=None,
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


def write_race(out_dir: Path, runs: Sequence[RaceRun], target: float, settings: dict[str, Any]) -> dict[str, Path]:
    """Write race.json, race.csv (one row per run) and race.png (mIoU against wall time) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "race.json", "csv": out_dir / "race.csv", "plot": out_dir / "race.png"}
    paths["json"].write_text(json.dumps(race_record(runs, target, settings), indent=2) + "\n")
    rows = [run.row() for run in runs]
    with open(paths["csv"], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot_race(runs, target, paths["plot"])
    return paths


def plot_race(runs: Sequence[RaceRun], target: float, path: Path) -> None:
    """Validation mIoU against wall time: every run a line (seeds of a recipe share its colour and one
    legend entry), the first evaluation at the target starred, the target a dashed line."""
    import matplotlib  # imported here: matplotlib is slow to import for every command
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure state

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
