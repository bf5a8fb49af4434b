"""Plan and train the runs of a race, each in its own folder, and read their curves back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segrecipes.bench.entries import CurvePoint, Entry, read_curve
from segrecipes.config import ConfigError, Duration, RunConfig, load_config
from segrecipes.data.spec import RawDataset, build_raw_dataset
from segrecipes.run import build_trainer


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
        try:
            summary = trainer.fit()
            if eval_data is not None:
                summary["miou"] = trainer.evaluate(eval_data).miou
        finally:
            trainer.close()  # the next run of the race starts its own loader workers
        runs.append(RaceRun(
            recipe=label, seed=seed, run_dir=str(run_dir), curve=read_curve(run_dir), final_miou=summary["miou"],
            images_per_s=summary["train_images_per_s"], wall_time_s=summary["elapsed_s"],
        ))
    return runs


