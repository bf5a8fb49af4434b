"""Plan a budget study: every entry trained separately at each of its budgets, for each seed.

A budget is a training duration in any unit (``8ep``, ``360ba``, ``2880sp``, ``20min``), or a bare
number: that fraction of the reference budget (``--reference-budget``, else the entry's preset
duration). Each run is a whole run of that duration, so a cosine baseline decays over each budget of
its own, and the time constants a recipe carries over (``recipe.transfer: scaled``) follow each budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from segrecipes.bench.entries import Entry
from segrecipes.config import ConfigError, Duration, RunConfig, load_config


@dataclass(frozen=True)
class PlannedRun:
    """One run of the study: an entry at a budget with a seed, and its whole config."""

    label: str
    budget: Duration
    seed: int
    config: RunConfig

    @property
    def name(self) -> str:
        """The run's folder name, e.g. ``mild-8ep-seed42``."""
        return f"{self.label}-{self.budget}-seed{self.seed}"


def parse_budget(text: str, reference: Duration | None) -> Duration:
    """``'8ep'`` -> 8 epochs; ``'0.25'`` -> a quarter of ``reference`` (batches stay whole)."""
    text = text.strip()
    try:
        fraction = float(text)
    except ValueError:
        try:
            budget = Duration.parse(text)
        except ConfigError as error:
            raise ConfigError(f"--budgets: {error}") from None
        if budget.unit == "dur":
            raise ConfigError(f"--budgets {text!r}: give a fraction of the reference budget as a bare number (0.25)")
        return budget
    if reference is None or fraction <= 0:
        raise ConfigError(f"--budgets {text!r}: a bare number is a positive fraction of --reference-budget")
    value = reference.value * fraction
    return Duration(max(1, round(value)) if reference.unit == "ba" else value, reference.unit)


def parse_budget_lists(texts: Sequence[str], labels: Sequence[str]) -> dict[str | None, list[str]]:
    """``['8ep,16ep', 'mild=4ep,8ep']`` -> ``{None: ['8ep', '16ep'], 'mild': ['4ep', '8ep']}``: a list
    without a label is every other entry's."""
    lists: dict[str | None, list[str]] = {}
    for text in texts:
        label, sep, values = text.partition("=")
        key = label.strip() if sep else None
        if key is not None and key not in labels:
            raise ConfigError(f"--budgets {text!r}: no entry is labelled {key!r} (entries: {', '.join(labels)})")
        items = [item.strip() for item in (values if sep else text).split(",") if item.strip()]
        if not items:
            raise ConfigError(f"--budgets {text!r}: give at least one budget")
        if key in lists:
            raise ConfigError(f"--budgets: two lists for {key or 'the entries without their own'}")
        lists[key] = items
    missing = [label for label in labels if label not in lists and None not in lists]
    if missing:
        raise ConfigError(f"--budgets: no budgets for {', '.join(missing)} (give a list without a label for all)")
    return lists


def study_plan(
    entries: Sequence[Entry],
    data: str,
    budgets: Mapping[str | None, Sequence[str]],
    seeds: int = 1,
    overrides: Sequence[str] = (),
    reference_budget: str | None = None,
) -> list[PlannedRun]:
    """Every run of the study, seed by seed (so a study stopped early holds whole seeds), each entry's
    budgets from the shortest; every config is built, and so checked, before anything trains."""
    if not entries or seeds < 1:
        raise ConfigError(f"bench study: need at least one entry and one seed (got {len(entries)}, seeds={seeds})")
    shared = [f"data.spec={data}", *overrides]
    reference = parse_budget(reference_budget, None) if reference_budget else None
    base = {entry: load_config(entry.recipe, overrides=[*shared, *entry.overrides]) for entry in entries}
    resolved = {entry: sorted({parse_budget(text, reference or base[entry].train.duration)
                               for text in budgets.get(entry.label, budgets.get(None, ()))},
                              key=lambda budget: (budget.unit, budget.value)) for entry in entries}
    plan = []
    for offset in range(seeds):
        for entry in entries:
            for budget in resolved[entry]:
                seed = base[entry].train.seed + offset
                timing = [f"train.duration={budget}", f"train.seed={seed}"]
                config = load_config(entry.recipe, overrides=[*shared, *entry.overrides, *timing])
                plan.append(PlannedRun(entry.label, budget, seed, config))
    return plan
