"""Race recipes to a target mIoU: wall time and images seen until each first reaches it.

Each entry (a preset, optionally with its own overrides and label: ``mild-literal=mild[recipe.transfer=none]``)
trains for its configured duration times ``scale`` with the same data, overrides and evaluation
interval (the shortest scaled duration split into ``evals`` parts, so evaluation costs every entry the
same per unit of training). Wall time is the trainer's ``elapsed_s`` at each evaluation: training,
earlier evaluations and checkpoints, as a user waits for them. Time constants that the recipes carry
over (``recipe.transfer: scaled``) follow the scaled duration; literal ones do not.

A run reaches the target at the first evaluation whose mIoU is at least the target: nothing is known
between two evaluations, so no interpolation. The target can be ``baseline``: the first entry's mean
final mIoU. "mIoU at the reference time" is each run's last evaluation no later than the first entry's
mean wall time (a run that ended earlier keeps its final model). Over several seeds each figure is
reported as mean and sample standard deviation; time to target over the seeds that reached it. The
final mIoU is scored on ``eval_data`` when given (another split or dataset), else on the run's own
validation split; the curves always use the latter.
"""

from __future__ import annotations

import csv
import json
import re
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from segrecipes.config import ConfigError, Duration, RunConfig, load_config
from segrecipes.data.spec import RawDataset, build_raw_dataset
from segrecipes.run import build_trainer

BASELINE_TARGET = "baseline"
METRICS_FILE = "metrics.jsonl"


@dataclass(frozen=True)
class CurvePoint:
    """One evaluation of a run."""

    step: int
    samples: int
    elapsed_s: float
    miou: float


@dataclass(frozen=True)
class Entry:
    """One racer: a preset under a label, with overrides of its own."""

    label: str
    recipe: str
    overrides: tuple[str, ...] = ()


@dataclass
class RaceRun:
    recipe: str  # the entry's label
    seed: int
    run_dir: str
    curve: list[CurvePoint]
    final_miou: float
    images_per_s: float
    wall_time_s: float
    reached: CurvePoint | None = None
    miou_at_reference_time: float | None = None

    def row(self) -> dict[str, Any]:
        """The flat record of race.csv."""
        reached = self.reached
        return {
            "recipe": self.recipe, "seed": self.seed, "reached": reached is not None,
            "time_to_target_s": reached.elapsed_s if reached else None,
            "images_to_target": reached.samples if reached else None,
            "steps_to_target": reached.step if reached else None,
            "final_miou": self.final_miou, "miou_at_reference_time": self.miou_at_reference_time,
            "images_per_s": self.images_per_s, "wall_time_s": self.wall_time_s, "run_dir": self.run_dir,
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
    miou_at_reference_time: Spread | None = field(default=None)


def read_curve(run_dir: Path) -> list[CurvePoint]:
    """The evaluation rows of a run's metrics.jsonl, in the order they were logged."""
    rows = [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines() if line.strip()]
    return [CurvePoint(row["step"], row["samples"], row["elapsed_s"], row["miou"]) for row in rows if "miou" in row]


def miou_at(curve: Sequence[CurvePoint], seconds: float) -> float | None:
    """The mIoU of the last evaluation at or before ``seconds`` of wall time (None: none was that early)."""
    earlier = [point for point in curve if point.elapsed_s <= seconds]
    return max(earlier, key=lambda point: point.elapsed_s).miou if earlier else None


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


_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]")  # what may not appear in a run folder's name
_ENTRY = re.compile(r"^(?:(?P<label>[^=\[\]]+)=)?(?P<recipe>[^=\[\]]+?)(?:\[(?P<sets>[^\[\]]*)\])?$")


def parse_entries(text: str) -> list[Entry]:
    """``'baseline,mild,mild-literal=mild[recipe.transfer=none ema.warmup=true]'`` -> entries; commas
    inside brackets do not split, overrides inside are separated by spaces."""
    items, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    entries = []
    for item in (item.strip() for item in items):
        match = _ENTRY.match(item)
        if not item or not match or depth != 0:
            raise ConfigError(f"--recipes: cannot read {item!r}: use RECIPE, RECIPE[key=value ...] or "
                              "LABEL=RECIPE[key=value ...]")
        recipe, sets = match["recipe"].strip(), tuple((match["sets"] or "").split())
        label = (match["label"] or "").strip() or _UNSAFE.sub("_", "-".join([recipe, *sets]))
        if _UNSAFE.search(label):
            raise ConfigError(f"--recipes: label {label!r} names a run folder: use letters, digits, '.', '_', '-'")
        entries.append(Entry(label, recipe, sets))
    labels = [entry.label for entry in entries]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"--recipes: two entries are labelled alike ({', '.join(labels)}); give LABEL=...")
    return entries


def race_configs(
    recipes: Sequence[str | Entry],
    data: str,
    scale: float = 1.0,
    seeds: int = 1,
    overrides: Sequence[str] = (),
    evals: int = 10,
    eval_every: str | None = None,
) -> list[tuple[str, int, RunConfig]]:
    """``(label, seed, config)`` for every run, seed by seed so drifting machine load hits all entries alike."""
    entries = [entry if isinstance(entry, Entry) else Entry(entry, entry) for entry in recipes]
    if not entries or seeds < 1:
        raise ConfigError(f"bench race: need at least one recipe and one seed (got {list(recipes)}, seeds={seeds})")
    shared = [f"data.spec={data}", *overrides]
    base = {entry: load_config(entry.recipe, overrides=[*shared, *entry.overrides]) for entry in entries}
    durations = {entry: scale_duration(config.train.duration, scale) for entry, config in base.items()}
    interval = _parse_interval(eval_every) if eval_every else shared_eval_interval(list(durations.values()), evals)
    plan = []
    for offset in range(seeds):
        for entry, config in base.items():
            seed = config.train.seed + offset
            timing = [f"train.duration={durations[entry]}", f"train.eval_interval={interval}", f"train.seed={seed}"]
            plan.append((entry.label, seed, load_config(entry.recipe, overrides=[*shared, *entry.overrides, *timing])))
    return plan


def evaluation_data(config: RunConfig, spec: str, split: str = "val") -> RawDataset:
    """``split`` of the dataset ``spec``, read with the race's data settings; refused unless its
    classes are the training data's."""
    data = config.data.model_copy(update={"spec": spec})
    raw, trained_on = build_raw_dataset(data, split), build_raw_dataset(config.data, "val")
    if list(raw.class_names) != list(trained_on.class_names):
        raise ConfigError(f"--eval-data {spec}: its {raw.num_classes} classes are not the training data's "
                          f"{trained_on.num_classes} ({config.data.spec})")
    return raw


def run_race(plan: Sequence[tuple[str, int, RunConfig]], out_dir: Path, eval_data: RawDataset | None = None,
             ) -> list[RaceRun]:
    """Train every planned run in ``out_dir/runs/<label>-seed<seed>``, read its curve back and score
    its final model on ``eval_data`` when given. Call :func:`score` for the target."""
    for label, seed, _ in plan:
        run_dir = out_dir / "runs" / f"{label}-seed{seed}"
        if run_dir.exists() and any(run_dir.iterdir()):
            raise ConfigError(f"--out {out_dir}: {run_dir} already holds a run; choose a new --out folder")
    runs = []
    for label, seed, config in plan:
        run_dir = out_dir / "runs" / f"{label}-seed{seed}"
        trainer = build_trainer(config, run_dir)
        summary = trainer.fit()
        if eval_data is not None:
            summary["miou"] = trainer.evaluate(eval_data).miou
        runs.append(RaceRun(
            recipe=label, seed=seed, run_dir=str(run_dir), curve=read_curve(run_dir), final_miou=summary["miou"],
            images_per_s=summary["train_images_per_s"], wall_time_s=summary["elapsed_s"],
        ))
    return runs


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
            miou_at_reference_time=_spread([run.miou_at_reference_time for run in mine
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


def write_race(out_dir: Path, runs: Sequence[RaceRun], target: float, settings: dict[str, Any]) -> dict[str, Path]:
    """Write race.json, race.csv (one row per run), race.png (mIoU against wall time) and
    race_pareto.png (final mIoU against total wall time) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "race.json", "csv": out_dir / "race.csv", "plot": out_dir / "race.png",
             "pareto": out_dir / "race_pareto.png"}
    paths["json"].write_text(json.dumps(race_record(runs, target, settings), indent=2) + "\n")
    rows = [run.row() for run in runs]
    with open(paths["csv"], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
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
        spread = _spread([point.miou for point in points])
        times.append(statistics.fmean(point.elapsed_s for point in points))
        means.append(spread.mean)  # type: ignore[union-attr]
        stds.append(spread.std)  # type: ignore[union-attr]
    return times, means, stds


def _figure(width: float = 7.0, height: float = 4.5) -> tuple[Any, Any, list[str]]:
    import matplotlib  # imported here: matplotlib is slow to import for every command
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure state

    figure = Figure(figsize=(width, height))
    return figure, figure.subplots(), matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]


def plot_race(runs: Sequence[RaceRun], target: float, path: Path) -> None:
    """Validation mIoU against wall time: each entry's mean over seeds with a +-1 std band, its mean
    time to target starred, the target a dashed line."""
    figure, axes, colours = _figure()
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
    axes.set_xlabel("wall time (min)")
    axes.set_ylabel("validation mIoU (%)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def plot_pareto(runs: Sequence[RaceRun], path: Path) -> None:
    """Final mIoU against total wall time per entry (mean, +-1 std on both axes): up and left is better."""
    figure, axes, colours = _figure(6.0, 4.0)
    for index, summary in enumerate(summarize(runs)):
        axes.errorbar(summary.wall_time_s.mean / 60, summary.final_miou.mean, xerr=summary.wall_time_s.std / 60,
                      yerr=summary.final_miou.std, marker="o", capsize=3, color=colours[index % len(colours)],
                      label=summary.recipe)
    axes.set_xlabel("total wall time (min)")
    axes.set_ylabel("final mIoU (%)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
