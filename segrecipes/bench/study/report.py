"""A study's scores in one record, and its files: study.json, study.csv and the frontier plot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from segrecipes.bench.figure import new_figure, save_figure
from segrecipes.bench.study.frontier import (
    AtBaselineCost,
    BudgetPoint,
    Currency,
    EqualCost,
    Regime,
    SpeedUp,
    at_baseline_cost,
    budget_points,
    equal_cost,
    regime_check,
    speedup,
)
from segrecipes.bench.study.runs import StudyRun
from segrecipes.cache import write_csv, write_json

CURRENCY_NAMES = {"passes": "image forward/backward passes", "wall_time_s": "wall time (s)"}


@dataclass
class StudyScores:
    """Everything the study concludes, the baseline (the first entry) against every other entry."""

    currency: Currency
    baseline: str  # the first entry's label
    target: float | None
    points: dict[str, list[BudgetPoint]]
    regime: Regime | None
    speedups: list[SpeedUp]
    equal_cost: list[EqualCost]
    at_baseline_cost: list[AtBaselineCost]


def score_study(runs: Sequence[StudyRun], labels: Sequence[str], currency: Currency = "passes",
                target: float | None = None, regime_threshold: float = 1.0) -> StudyScores:
    """Scores of the finished ``runs`` of the entries ``labels`` (the first is the baseline); the target is
    the baseline's mean at its longest budget unless given. Entries without a finished run are left out."""
    points = {label: found for label in labels if (found := budget_points(runs, label, currency))}
    baseline = points.get(labels[0]) if labels else None
    if not baseline:
        return StudyScores(currency, labels[0] if labels else "", target, points, None, [], [], [])
    target = baseline[-1].miou.mean if target is None else target
    others = [entry for label, entry in points.items() if label != labels[0]]
    return StudyScores(
        currency, labels[0], target, points, regime_check(baseline, regime_threshold),
        [speedup(entry, baseline, target) for entry in others],
        [row for entry in others for row in equal_cost(entry, baseline)],
        [at_baseline_cost(entry, baseline) for entry in others],
    )


def study_record(scores: StudyScores, runs: Sequence[StudyRun], settings: dict[str, Any]) -> dict[str, Any]:
    """What study.json holds: settings, the scores (with the derived figures) and every run."""
    derived = {
        "speedups": [{**asdict(row), "vs_frontier": row.vs_frontier, "vs_longest": row.vs_longest,
                      "at_least": row.at_least, "frontier_bound": row.frontier_bound} for row in scores.speedups],
        "equal_cost": [{**asdict(row), "difference": row.difference} for row in scores.equal_cost],
        "at_baseline_cost": [{**asdict(row), "difference": row.difference} for row in scores.at_baseline_cost],
        "regime": None if scores.regime is None else {**asdict(scores.regime), "levelled": scores.regime.levelled,
                                                      "gain_per_doubling": scores.regime.gain_per_doubling},
    }
    return {"settings": settings, "currency": scores.currency, "target_miou": scores.target,
            "points": {label: [asdict(point) for point in entry] for label, entry in scores.points.items()},
            **derived, "runs": [asdict(run) for run in runs]}


def write_study(out_dir: Path, scores: StudyScores, runs: Sequence[StudyRun], settings: dict[str, Any]
                ) -> dict[str, Path]:
    """study.json, study.csv (a row per run) and study.png (the frontiers) in ``out_dir``."""
    paths = {"json": out_dir / "study.json", "csv": out_dir / "study.csv", "plot": out_dir / "study.png"}
    write_json(paths["json"], study_record(scores, runs, settings))
    rows = [run.row() for run in runs]
    if rows:
        write_csv(paths["csv"], [list(rows[0]), *(list(row.values()) for row in rows)])
    plot_frontiers(scores, paths["plot"])
    return paths


def plot_frontiers(scores: StudyScores, path: Path) -> None:
    """Final validation mIoU against cost (log scale), one line per entry through its budgets, mean and
    ±1 std over seeds; the baseline's line is its frontier, the target a dashed line."""
    figure, axes, colours = new_figure(7.0, 4.5)
    for index, (label, entry) in enumerate(scores.points.items()):
        seeds = max(len(point.by_seed) for point in entry)
        name = f"{label} (frontier)" if label == scores.baseline else label
        axes.errorbar([point.cost for point in entry], [point.miou.mean for point in entry],
                      yerr=[point.miou.std for point in entry], marker="o", capsize=3,
                      color=colours[index % len(colours)], label=f"{name}, {seeds} seed{'s' * (seeds > 1)}")
        for point in entry:
            axes.annotate(point.budget, (point.cost, point.miou.mean), textcoords="offset points", xytext=(4, -10),
                          fontsize="x-small", color=colours[index % len(colours)])
    if scores.target is not None:
        axes.axhline(scores.target, color="gray", linestyle="--", label=f"target {scores.target:.2f} mIoU")
    axes.set_xscale("log")
    save_figure(figure, axes, path, f"cost: {CURRENCY_NAMES.get(scores.currency, scores.currency)}",
                "final validation mIoU (%)")
