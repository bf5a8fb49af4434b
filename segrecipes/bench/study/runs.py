"""Train the runs of a study, resumably: a finished run is reused, an interrupted one resumed.

Each run lives in ``OUT/runs/<label>-<budget>-seed<seed>``. When it has trained, its final model is
scored on the validation split (the study's quality) and on the training split without augmentation
(for the train/val gap of the regime check), and ``result.json`` is written: from then on the run is
reused as it is. A run folder that holds checkpoints but no result continues from its newest
checkpoint (a finished run then only scores). A folder whose run was planned with another config is
refused, so a changed command line never mixes two studies.

Cost is counted in two currencies: wall time (the run's own clock: training, evaluations and
checkpoints) and image-passes, a forward and backward pass of one image, which a SAM step takes twice;
the second does not depend on the machine or its load.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from segrecipes.bench.entries import CurvePoint, read_curve
from segrecipes.bench.study.plan import PlannedRun
from segrecipes.cache import write_json
from segrecipes.config import ConfigError, build_config
from segrecipes.methods import SAM
from segrecipes.run import build_trainer, weights_normalized

RESULT_FILE = "result.json"
# keys the run resolves itself (data statistics from the weights or the training split, the learning rate
# of `optimizer.lr: auto` from its range test): not compared
_RESOLVED_KEYS = {("data", "mean"), ("data", "std"), ("optimizer", "lr")}


@dataclass
class StudyRun:
    """A finished run: where its budget put it, what it cost and how well it did."""

    label: str
    budget: str
    seed: int
    run_dir: str
    steps: int
    images: int
    passes: int  # image forward/backward passes: images, plus images again on each SAM step
    wall_time_s: float
    val_miou: float
    train_miou: float
    curve: list[CurvePoint] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudyRun:
        return cls(**{**data, "curve": [CurvePoint(**point) for point in data["curve"]]})

    def row(self) -> dict[str, Any]:
        """The flat record of study.csv."""
        return {key: value for key, value in asdict(self).items() if key not in ("curve", "config")}


def image_passes(steps: int, batch: int, sam_interval: int | None) -> int:
    """Forward/backward passes of one image over ``steps`` steps of ``batch`` images, a SAM step (steps
    ``interval``, ``2 * interval``... counted from 1) taking two."""
    return batch * (steps + (steps // sam_interval if sam_interval else 0))


def finished_runs(plan: Sequence[PlannedRun], out_dir: Path) -> list[StudyRun]:
    """The runs of ``plan`` that have a result, in plan order (a study can be scored while it runs)."""
    return [run for planned in plan if (run := _result(planned, out_dir)) is not None]


def shard_of(plan: Sequence[PlannedRun], index: int, count: int) -> list[PlannedRun]:
    """Shard ``index`` of ``count`` (0-based): seed by seed, each run goes to the shard with the least
    planned work so far, longest runs first, so that shards run in parallel take about as long."""
    if not 0 <= index < count:
        raise ConfigError(f"--shard {index}/{count}: give I/N with 0 <= I < N")
    load, mine = [0.0] * count, []
    for seed in dict.fromkeys(planned.seed for planned in plan):
        for planned in sorted((p for p in plan if p.seed == seed), key=lambda p: -planned_work(p)):
            target = min(range(count), key=lambda shard: (load[shard], shard))
            load[target] += planned_work(planned)
            if target == index:
                mine.append(planned)
    return mine


def planned_work(planned: PlannedRun) -> float:
    """A run's work before it runs, to balance shards: its budget, once more per SAM step (a study's
    budgets share a unit; a wall-clock budget counts its seconds)."""
    config = planned.config
    interval = config.sam.interval.value if config.sam.enabled and config.sam.interval.unit == "ba" else None
    return planned.budget.value * (1 + (1 / interval if interval else 0))


def run_study(plan: Sequence[PlannedRun], out_dir: Path, shard: tuple[int, int] = (0, 1),
              on_finish: Callable[[list[StudyRun]], None] | None = None) -> list[StudyRun]:
    """Train this shard's runs of ``plan`` (:func:`shard_of`: several processes can share a study) that
    have no result yet; returns the study's finished runs. ``on_finish(runs)`` is called after each run
    this call trained, with every finished run of the study so far."""
    mine = shard_of(plan, *shard)
    for planned in plan:  # refuse a folder of another study before anything trains
        _result(planned, out_dir)
    for planned in mine:
        if _result(planned, out_dir) is None:
            _train(planned, out_dir / "runs" / planned.name)
            if on_finish is not None:
                on_finish(finished_runs(plan, out_dir))
    return finished_runs(plan, out_dir)


def _train(planned: PlannedRun, run_dir: Path) -> StudyRun:
    config = planned.config
    trainer = build_trainer(config, run_dir, resume="auto")
    try:
        summary = trainer.fit()
        train_miou = trainer.evaluate(trainer.train_data.raw).miou
    finally:
        trainer.close()  # the next run of the study starts its own loader workers
    sam = next((method.interval for method in trainer.methods if isinstance(method, SAM)), None)
    steps = summary["step"]
    run = StudyRun(
        label=planned.label, budget=str(planned.budget), seed=planned.seed, run_dir=str(run_dir), steps=steps,
        images=steps * config.train.global_batch_size,
        passes=image_passes(steps, config.train.global_batch_size, sam), wall_time_s=summary["elapsed_s"],
        val_miou=summary["miou"], train_miou=train_miou, curve=read_curve(run_dir),
        config=_planned_dict(planned),
    )
    write_json(run_dir / RESULT_FILE, asdict(run))
    return run


def _result(planned: PlannedRun, out_dir: Path) -> StudyRun | None:
    """The run's result when it has one; refuses a folder holding a run of another config."""
    run_dir = out_dir / "runs" / planned.name
    path = run_dir / RESULT_FILE
    saved = None
    if path.is_file():
        result = StudyRun.from_dict(json.loads(path.read_text()))
        saved = result.config
    elif (run_dir / "config.yaml").is_file():
        saved, result = yaml.safe_load((run_dir / "config.yaml").read_text()), None
    else:
        return None
    # read as this release reads a config (keys of earlier releases moved, defaults filled in)
    difference = _first_difference(_planned_dict(planned), build_config(saved, str(run_dir)).to_dict())
    if difference is not None:
        raise ConfigError(f"{run_dir}: holds a run of another config ({difference}); use a new --out folder or "
                          "the same command line")
    return result


def _planned_dict(planned: PlannedRun) -> dict[str, Any]:
    return weights_normalized(planned.config).to_dict()


def _first_difference(planned: dict[str, Any], saved: dict[str, Any]) -> str | None:
    for section, values in planned.items():
        for key, value in values.items():
            theirs = saved.get(section, {}).get(key)
            if (section, key) in _RESOLVED_KEYS and value in (None, "auto"):
                continue
            if theirs != value:
                return f"{section}.{key} is {theirs!r}, planned {value!r}"
    return None
