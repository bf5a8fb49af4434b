"""The search space of ``segrecipes tune``: one :class:`Dimension` per config key, defaults per recipe,
and ``--space section.key=low:high[:log]`` to narrow or extend them.

A dimension is a number range over any numeric key of the run's config; a duration key takes its
bounds with a unit (``ema.half_life=0.05dur:0.5dur:log``) and is searched in that unit. The defaults
search the constants the reference tuned by hand: the learning rate and weight decay (log-uniform),
and for the methods the recipe enables, the EMA half-life as a fraction of the run, SAM's rho and
MixUp's alpha. Every bound is checked against the config before a trial runs.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from segrecipes.config import ConfigError, Duration, RunConfig, build_config, merge_dicts, parse_override

SYNTAX = "section.key=low:high or section.key=low:high:log"


@dataclass(frozen=True)
class Dimension:
    """``key`` searched between ``low`` and ``high`` (log-uniform with ``log``), whole numbers for an
    integer key, in ``unit`` for a duration key."""

    key: str
    low: float
    high: float
    log: bool = False
    unit: str | None = None
    integer: bool = False

    def suggest(self, trial: Any) -> float | int:
        """The value an Optuna trial takes for this key."""
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, log=self.log)

    def override(self, value: float | int) -> str:
        """``section.key=value`` as ``--set`` takes it."""
        return f"{self.key}={value:.6g}{self.unit or ''}" if not self.integer else f"{self.key}={value}"

    def __str__(self) -> str:
        unit = self.unit or ""
        return f"{self.key}={self.low:g}{unit}:{self.high:g}{unit}{':log' if self.log else ''}"


def default_space(config: RunConfig) -> list[Dimension]:
    """The recipe's constants worth searching (the methods' only where the recipe enables them)."""
    adaptive = config.optimizer.name == "adamw"
    space = [Dimension("optimizer.lr", 1e-5 if adaptive else 1e-3, 1e-2 if adaptive else 0.3, log=True),
             Dimension("optimizer.weight_decay", 1e-6, 1e-3 if not adaptive else 0.1, log=True)]
    if config.ema.enabled:
        space.append(Dimension("ema.half_life", 0.02, 0.5, log=True, unit="dur"))
    if config.sam.enabled:
        space.append(Dimension("sam.rho", 0.02, 0.5, log=True))
    if config.mixup.enabled:
        space.append(Dimension("mixup.alpha", 0.05, 1.0, log=True))
    return space


def search_space(config: RunConfig, texts: Sequence[str], only_given: bool = False) -> list[Dimension]:
    """:func:`default_space` (none with ``only_given``), with each ``--space`` text replacing or adding
    its key; every bound is checked against ``config``."""
    given = [parse_dimension(text, config) for text in texts]
    keys = [dimension.key for dimension in given]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ConfigError(f"--space: {repeated[0]} given more than once")
    space = [dimension for dimension in ([] if only_given else default_space(config)) if dimension.key not in keys]
    space += given
    if not space:
        raise ConfigError("--space-only needs at least one --space key to search")
    return space


def parse_dimension(text: str, config: RunConfig) -> Dimension:
    """``'optimizer.lr=1e-3:1e-1:log'`` -> a dimension, refused in one line when the key is not a
    numeric key of ``config``, a bound is out of the key's range, low > high, or a log range reaches 0."""
    key, sep, bounds = text.partition("=")
    key, parts = key.strip(), bounds.split(":")
    if not sep or not key or len(parts) not in (2, 3) or (len(parts) == 3 and parts[2].strip() != "log"):
        raise ConfigError(f"--space {text!r}: expected {SYNTAX}")
    (low, low_unit), (high, high_unit) = (_bound(text, part) for part in parts[:2])
    if low_unit != high_unit:
        raise ConfigError(f"--space {text!r}: both bounds need the same unit (got {low_unit or 'none'} and "
                          f"{high_unit or 'none'})")
    log = len(parts) == 3
    if low > high:
        raise ConfigError(f"--space {text!r}: low {low:g} is above high {high:g}")
    if log and low <= 0:
        raise ConfigError(f"--space {text!r}: a log range must lie above 0 (low is {low:g})")
    current = _current_value(config, key, text)
    if low_unit is None and isinstance(current, str) and current != "auto":
        raise ConfigError(f"--space {text!r}: {key} is {_kind(current)}")
    integer = isinstance(current, int) and not isinstance(current, bool) and low_unit is None \
        and low.is_integer() and high.is_integer()
    dimension = Dimension(key, low, high, log, low_unit, integer)
    for value in (low, high):  # the key's own checks, e.g. sam.rho > 0
        checked = build_config(merge_dicts(config.to_dict(), parse_override(dimension.override(value))),
                               f"--space {text}")
        if isinstance(_read(checked.to_dict(), key), str) and low_unit is None:
            raise ConfigError(f"--space {text!r}: {key} is {_kind(_read(checked.to_dict(), key))}")
    return dimension


def _bound(text: str, part: str) -> tuple[float, str | None]:
    """A bound as a number and its duration unit (None for a plain number)."""
    try:
        return float(part), None
    except ValueError:
        pass
    try:
        duration = Duration.parse(part.strip())
    except ConfigError:
        raise ConfigError(f"--space {text!r}: {part!r} is not a number (expected {SYNTAX})") from None
    return float(duration.value), duration.unit


def _current_value(config: RunConfig, key: str, text: str) -> Any:
    """The value ``key`` holds in ``config``; an unknown key is refused naming the closest one."""
    data = config.to_dict()
    section, _, name = key.partition(".")
    if section not in data or not isinstance(data[section], dict) or name not in data[section]:
        known = [f"{part}.{field}" for part, fields in data.items() if isinstance(fields, dict) for field in fields]
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"--space {text!r}: unknown key {key!r}{hint}")
    return data[section][name]


def _kind(value: str) -> str:
    """Why a text value takes no bare-number range."""
    try:
        Duration.parse(value)
    except ConfigError:
        return "not a number"
    return "a duration: give both bounds with a unit (e.g. 100ba:2000ba or 0.05dur:0.5dur)"


def _read(data: dict[str, Any], key: str) -> Any:
    section, _, name = key.partition(".")
    return data[section][name]
