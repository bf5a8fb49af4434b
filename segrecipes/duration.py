"""A length of training or an interval: batches (``1000ba``), epochs (``128ep``) or seconds (``39min``).

What a duration means in steps depends on the run (steps per epoch); that arithmetic is the
engine's clock's. This module only parses and prints, so the config and the engine share it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from segrecipes.errors import ConfigError

Unit = Literal["ba", "ep", "s"]
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ep|ba|s|sec|min|m|h)\s*$")
_SECONDS_PER = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}


@dataclass(frozen=True)
class Duration:
    """``value`` batches, epochs or seconds; batches are whole."""

    value: float
    unit: Unit

    def __post_init__(self) -> None:
        if self.unit not in ("ba", "ep", "s"):
            raise ConfigError(f"invalid duration unit {self.unit!r}: use 'ba', 'ep' or 's'")
        if not self.value > 0:
            raise ConfigError(f"invalid duration {self}: must be positive")
        if self.unit == "ba" and self.value != int(self.value):
            raise ConfigError(f"invalid duration {self}: batches must be a whole number")

    @classmethod
    def parse(cls, text: str | int | float | Duration) -> Duration:
        """``'128ep'``, ``'1000ba'``, ``'90s'``, ``'39min'``, ``'2h'`` (or a Duration, returned as is)."""
        if isinstance(text, Duration):
            return text
        match = _PATTERN.match(str(text))
        if not match:
            raise ConfigError(f"invalid duration {text!r}: use e.g. '128ep', '1000ba', '39min', '2h', '90s'")
        value, unit = float(match.group(1)), match.group(2)
        if unit in _SECONDS_PER:
            return cls(value * _SECONDS_PER[unit], "s")
        return cls(value, unit)  # type: ignore[arg-type]

    def __str__(self) -> str:
        number = int(self.value) if self.value == int(self.value) else self.value
        return f"{number}{self.unit}"
