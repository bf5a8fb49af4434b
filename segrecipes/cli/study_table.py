"""How ``segrecipes bench study`` prints its scores: the regime check first, then the claims."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from segrecipes.bench.entries import Spread
from segrecipes.bench.study.report import CURRENCY_NAMES, StudyScores


def shown(value: Spread | float | None, digits: int = 2, sign: bool = False) -> str:
    """``mean ± std`` (or a number), ``-`` for none: how the bench tables print a figure over seeds."""
    if value is None:
        return "-"
    if isinstance(value, Spread):
        text = f"{value.mean:+.{digits}f}" if sign else f"{value.mean:.{digits}f}"
        return text + (f" ± {value.std:.{digits}f}" if value.std else "")
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _cost(value: float | None, currency: str) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if currency == "passes" else f"{value:,.1f}"


def print_study(console: Console, scores: StudyScores, finished: int, planned: int) -> None:
    """The regime check, every entry's budgets, the speed-ups to the target and quality at equal cost."""
    currency = scores.currency
    console.print(f"{finished} of {planned} planned runs finished; cost in {CURRENCY_NAMES[currency]}")
    regime = scores.regime
    if regime is None:
        console.print("regime check: needs the baseline at two budgets or more")
    else:
        verdict = "levelled off" if regime.levelled else "NOT levelled off: a speed-up against it means little"
        console.print(f"regime check: the baseline gains {shown(regime.gain, sign=True)} mIoU from {regime.second} to "
                      f"{regime.longest} ({regime.cost_ratio:.2f}x the cost, {regime.gain_per_doubling:+.2f} per "
                      f"doubling): {verdict} (threshold {regime.threshold:g} per doubling); train/val gap at "
                      f"{regime.longest}: {shown(regime.train_val_gap)} mIoU")
    table = Table(title="final validation mIoU by budget (mean ± std over seeds)")
    for header in ("entry", "budget", "seeds", "cost", "val mIoU", "train mIoU", "vs baseline frontier"):
        table.add_column(header, justify="left" if header in ("entry", "budget") else "right")
    differences = {(row.label, row.budget): row for row in scores.equal_cost}
    for label, points in scores.points.items():
        for point in points:
            row = differences.get((label, point.budget))
            versus = "-" if row is None or row.difference is None else (
                shown(row.difference, sign=True) + (f" (paired {shown(row.paired, sign=True)})" if row.paired else ""))
            table.add_row(label, point.budget, str(len(point.by_seed)), _cost(point.cost, currency),
                          shown(point.miou), shown(point.train_miou), versus)
    console.print(table)
    if not scores.speedups or scores.target is None:
        return
    table = Table(title=f"cost to reach {scores.target:.2f} mIoU")
    for header in ("entry", "entry's cost", "baseline frontier's cost", "speed-up vs frontier",
                   "speed-up vs longest baseline", "at the longest baseline's cost"):
        table.add_column(header, justify="left" if header == "entry" else "right")
    at_cost = {row.label: row for row in scores.at_baseline_cost}
    for row in scores.speedups:
        bound = ">= " if row.at_least else ""
        frontier_bound = f"{row.frontier_bound} " if row.frontier_bound else ""
        entry_cost = "not reached" if row.entry is None else f"{_cost(row.entry.cost, currency)} ({row.entry.how})"
        frontier = "not reached" if row.frontier is None else (
            f"{_cost(row.frontier.cost, currency)} ({row.frontier.how})")
        quality = at_cost[row.label]
        table.add_row(row.label, entry_cost, frontier,
                      "-" if row.vs_frontier is None else f"{frontier_bound}{row.vs_frontier:.2f}x",
                      "-" if row.vs_longest is None else f"{bound}{row.vs_longest:.2f}x",
                      "-" if quality.difference is None else (
                          f"{shown(quality.difference, sign=True)}"
                          + (f" (paired {shown(quality.paired, sign=True)})" if quality.paired else "")))
    console.print(table)
    console.print("costs between budgets are interpolated in log cost; '>=' / '<=': the entry / the frontier "
                  "reached the target at its cheapest budget, so its cost is at most that; '?': both did")
