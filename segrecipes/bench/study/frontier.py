"""Score a budget study against the baseline's frontier: what each entry buys at what cost.

The first entry is the baseline. Each entry's *frontier* is the line through its budgets: mean final
validation mIoU against mean cost, drawn straight between neighbouring budgets **in log cost** (budgets
usually double), and undefined outside its cheapest and dearest budget. From it:

- **regime check**, printed before any claim: how much the baseline gained from its second-longest to
  its longest budget (paired over seeds), and its train/val gap at the longest. A baseline that still
  gains is not levelled off, and a speed-up against it would mean little;
- **speed-up to a target** (by default the baseline's mean at its longest budget, where it levels off):
  the cost at which the baseline frontier first reaches the target over the cost at which the entry's
  does, each interpolated between the two budgets around the crossing; and, the reference's way, the
  baseline's longest budget over the entry's cost. An entry that already reaches the target at its
  cheapest budget has a cost of *at most* that budget, and a speed-up of *at least* the ratio;
- **quality at equal cost**: each entry budget's mIoU minus the baseline frontier's at the same cost,
  and each entry's frontier at the baseline's longest cost minus the baseline there; paired per seed
  (each seed's runs against the same seed's baseline frontier) where the seeds are shared.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from segrecipes.bench.entries import Spread, spread
from segrecipes.bench.study.runs import StudyRun

Currency = str  # "passes" (image forward/backward passes) or "wall_time_s"
CURRENCIES = ("passes", "wall_time_s")
Line = Sequence[tuple[float, float]]  # (cost, mIoU) by increasing cost


@dataclass
class BudgetPoint:
    """One entry at one budget, over its seeds."""

    label: str
    budget: str
    cost: float  # mean over seeds
    miou: Spread  # final validation mIoU
    train_miou: Spread  # final mIoU on the training split, without augmentation
    by_seed: dict[int, float]  # validation mIoU
    train_by_seed: dict[int, float]
    cost_by_seed: dict[int, float]


def budget_points(runs: Sequence[StudyRun], label: str, currency: Currency = "passes") -> list[BudgetPoint]:
    """``label``'s budgets, by increasing mean cost."""
    if currency not in CURRENCIES:
        raise ValueError(f"currency: use one of {', '.join(CURRENCIES)}, got {currency!r}")
    mine = [run for run in runs if run.label == label]
    points = []
    for budget in dict.fromkeys(run.budget for run in mine):
        group = [run for run in mine if run.budget == budget]
        costs = {run.seed: float(getattr(run, currency)) for run in group}
        points.append(BudgetPoint(label, budget, statistics.fmean(costs.values()),
                                  spread([run.val_miou for run in group]),  # type: ignore[arg-type]
                                  spread([run.train_miou for run in group]),  # type: ignore[arg-type]
                                  {run.seed: run.val_miou for run in group},
                                  {run.seed: run.train_miou for run in group}, costs))
    return sorted(points, key=lambda point: point.cost)


def line(points: Sequence[BudgetPoint], seed: int | None = None) -> list[tuple[float, float]]:
    """(cost, mIoU) of ``points`` by increasing cost: the means, or one seed's runs (the points that have it;
    in wall time a seed's own costs need not keep the order of the means)."""
    if seed is None:
        return [(point.cost, point.miou.mean) for point in points]
    return sorted((point.cost_by_seed[seed], point.by_seed[seed]) for point in points if seed in point.by_seed)


def miou_at(frontier: Line, cost: float) -> float | None:
    """The frontier's mIoU at ``cost``, straight between budgets in log cost; None outside its budgets."""
    for budget_cost, miou in frontier:
        if math.isclose(cost, budget_cost, rel_tol=1e-9):
            return miou
    for (low_cost, low), (high_cost, high) in zip(frontier, frontier[1:]):
        if low_cost < cost < high_cost:
            return low + math.log(cost / low_cost) / math.log(high_cost / low_cost) * (high - low)
    return None


@dataclass
class Reach:
    """Where a frontier first reaches a target: its cost and how that cost is known."""

    cost: float
    how: str  # "at a budget", "interpolated", "at most (reached at its cheapest budget)"

    @property
    def bound(self) -> bool:
        return self.how.startswith("at most")


def cost_to_reach(frontier: Line, target: float) -> Reach | None:
    """The cost at which ``frontier`` first reaches ``target``, None when no budget does."""
    for index, (cost, miou) in enumerate(frontier):
        if miou < target:
            continue
        if index == 0:
            return Reach(cost, "at most (reached at its cheapest budget)")
        low_cost, low = frontier[index - 1]
        if miou == target:
            return Reach(cost, "at a budget")
        share = (target - low) / (miou - low)
        return Reach(math.exp(math.log(low_cost) + share * math.log(cost / low_cost)), "interpolated")
    return None


@dataclass
class Regime:
    """Whether the baseline levelled off: its last gain and its train/val gap at the longest budget."""

    longest: str
    second: str
    cost_ratio: float  # longest / second-longest budget's cost
    gain: Spread  # longest minus second-longest, paired over the seeds both have (means if none)
    train_val_gap: Spread  # train minus val mIoU at the longest budget
    threshold: float  # mIoU per doubling of the cost

    @property
    def gain_per_doubling(self) -> float:
        """The mean gain scaled to a doubling of the cost (the budgets' ratio need not be 2)."""
        return self.gain.mean / math.log2(self.cost_ratio)

    @property
    def levelled(self) -> bool:
        return self.gain_per_doubling < self.threshold


def regime_check(baseline: Sequence[BudgetPoint], threshold: float = 1.0) -> Regime | None:
    """The regime check on the baseline's points; None with fewer than two budgets."""
    if len(baseline) < 2:
        return None
    second, longest = baseline[-2], baseline[-1]
    seeds = sorted(set(second.by_seed) & set(longest.by_seed))
    gains = [longest.by_seed[seed] - second.by_seed[seed] for seed in seeds] or [longest.miou.mean - second.miou.mean]
    gaps = [longest.train_by_seed[seed] - longest.by_seed[seed] for seed in longest.by_seed]
    return Regime(longest.budget, second.budget, longest.cost / second.cost, spread(gains),  # type: ignore[arg-type]
                  spread(gaps), threshold)  # type: ignore[arg-type]


@dataclass
class SpeedUp:
    """An entry's speed-up to ``target`` against the baseline frontier and the baseline's longest budget."""

    label: str
    target: float
    entry: Reach | None
    frontier: Reach | None
    longest_cost: float

    @property
    def vs_frontier(self) -> float | None:
        return self.frontier.cost / self.entry.cost if self.entry and self.frontier else None

    @property
    def vs_longest(self) -> float | None:
        return self.longest_cost / self.entry.cost if self.entry else None

    @property
    def at_least(self) -> bool:
        """The entry reached the target at its cheapest budget: its cost is an upper bound, so the speed-up
        against the longest baseline is a lower bound."""
        return self.entry is not None and self.entry.bound

    @property
    def frontier_bound(self) -> str:
        """How ``vs_frontier`` is known: ``""`` exactly, ``">="`` (only the entry's cost is a bound),
        ``"<="`` (only the frontier's), ``"?"`` (both reached the target at their cheapest budgets)."""
        frontier = self.frontier is not None and self.frontier.bound
        return {(False, False): "", (True, False): ">=", (False, True): "<=", (True, True): "?"}[
            (self.at_least, frontier)]


def speedup(entry: Sequence[BudgetPoint], baseline: Sequence[BudgetPoint], target: float) -> SpeedUp:
    frontier = line(baseline)
    return SpeedUp(entry[0].label, target, cost_to_reach(line(entry), target), cost_to_reach(frontier, target),
                   frontier[-1][0])


@dataclass
class EqualCost:
    """An entry's budget against the baseline frontier at the same cost."""

    label: str
    budget: str
    cost: float
    miou: Spread
    frontier_miou: float | None  # None: the cost is outside the baseline's budgets
    paired: Spread | None  # per seed: the entry's run minus that seed's baseline frontier at its cost

    @property
    def difference(self) -> float | None:
        return None if self.frontier_miou is None else self.miou.mean - self.frontier_miou


def equal_cost(entry: Sequence[BudgetPoint], baseline: Sequence[BudgetPoint]) -> list[EqualCost]:
    frontier = line(baseline)
    rows = []
    for point in entry:
        paired = [point.by_seed[seed] - value for seed in point.by_seed
                  if (value := miou_at(line(baseline, seed), point.cost_by_seed[seed])) is not None]
        rows.append(EqualCost(point.label, point.budget, point.cost, point.miou, miou_at(frontier, point.cost),
                              spread(paired)))
    return rows


@dataclass
class AtBaselineCost:
    """An entry's frontier at the cost of the baseline's longest budget, against the baseline there."""

    label: str
    cost: float
    miou: float | None  # None: the entry's budgets do not span that cost
    baseline_miou: float
    paired: Spread | None

    @property
    def difference(self) -> float | None:
        return None if self.miou is None else self.miou - self.baseline_miou


def at_baseline_cost(entry: Sequence[BudgetPoint], baseline: Sequence[BudgetPoint]) -> AtBaselineCost:
    longest = baseline[-1]
    paired = [value - longest.by_seed[seed] for seed in longest.by_seed
              if (value := miou_at(line(entry, seed), longest.cost_by_seed[seed])) is not None]
    return AtBaselineCost(entry[0].label, longest.cost, miou_at(line(entry), longest.cost), longest.miou.mean,
                          spread(paired))
