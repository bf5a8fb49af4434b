"""A length of training or an interval: batches (``1000ba``), epochs (``128ep``), samples
(``128000sp``), a fraction of the run (``0.25dur``) or seconds (``39min``).

What a duration means in steps depends on the run (steps per epoch, batch size, the run's length);
that arithmetic is the engine's clock's. This module only parses and prints, so the config and the
engine share it. A bare number (``1000``) is read as batches only where a field says so
(:meth:`Duration.parse_batches`), for the method constants that used to be plain batch counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from segrecipes.errors import ConfigError

Unit = Literal["ba", "ep", "sp", "dur", "s"]
UNITS = ("ba", "ep", "sp", "dur", "s")
_NUMBER = r"(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
_PATTERN = re.compile(rf"^\s*{_NUMBER}\s*(ep|ba|sp|dur|s|sec|min|m|h)\s*$")
_SECONDS_PER = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}


@dataclass(frozen=True)
class Duration:
    """``value`` batches, epochs, samples, fractions of the run or seconds; batches and samples are whole."""

    value: float
    unit: Unit

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ConfigError(f"invalid duration unit {self.unit!r}: use one of {', '.join(UNITS)}")
        if not self.value > 0:
            raise ConfigError(f"invalid duration {self}: must be positive")
        if self.unit in ("ba", "sp") and self.value != int(self.value):
            raise ConfigError(f"invalid duration {self}: {'batches' if self.unit == 'ba' else 'samples'} must be a "
                              "whole number")

    @classmethod
    def parse(cls, text: str | int | float | Duration) -> Duration:
        """``'128ep'``, ``'1000ba'``, ``'128000sp'``, ``'0.25dur'``, ``'90s'``, ``'39min'``, ``'2h'`` (or a
        Duration, returned as is)."""
        if isinstance(text, Duration):
            return text
        match = _PATTERN.match(str(text))
        if not match:
            raise ConfigError(f"invalid duration {text!r}: use e.g. '128ep', '1000ba', '128000sp', '0.25dur', "
                              "'39min', '2h', '90s'")
        value, unit = float(match.group(1)), match.group(2)
        if unit in _SECONDS_PER:
            return cls(value * _SECONDS_PER[unit], "s")
        return cls(value, unit)  # type: ignore[arg-type]

    @classmethod
    def parse_batches(cls, text: str | int | float | Duration) -> Duration:
        """Like :meth:`parse`, but a bare whole number means batches (``1000`` -> ``1000ba``)."""
        if isinstance(text, bool):
            raise ConfigError(f"invalid duration {text!r}")
        if isinstance(text, float) and text.is_integer():
            text = int(text)
        if isinstance(text, int) or (isinstance(text, str) and text.strip().isdigit()):
            return cls(int(text), "ba")
        return cls.parse(text)

    def __str__(self) -> str:
        number = int(self.value) if self.value == int(self.value) else float(f"{self.value:.6g}")
        return f"{number}{self.unit}"
