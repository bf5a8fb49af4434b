"""What the races and studies share: entries (a preset under a label, with its own overrides), the
evaluations a run logged, and the mean and spread over seeds."""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from segrecipes.config import ConfigError

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
    """One entry of a race or a study: a preset under a label, with overrides of its own."""

    label: str
    recipe: str
    overrides: tuple[str, ...] = ()


@dataclass
class Spread:
    """A mean over seeds and its sample standard deviation."""

    mean: float
    std: float


def read_curve(run_dir: Path) -> list[CurvePoint]:
    """The evaluation rows of a run's metrics.jsonl, in the order they were logged."""
    rows = [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines() if line.strip()]
    return [CurvePoint(row["step"], row["samples"], row["elapsed_s"], row["miou"]) for row in rows if "miou" in row]


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


def spread(values: Sequence[float]) -> Spread | None:
    """Mean and sample standard deviation (0 for one value); None for no values."""
    if not values:
        return None
    return Spread(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
