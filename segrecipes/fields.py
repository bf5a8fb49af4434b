"""The building blocks of every component's settings: a strict pydantic section and duration fields.

Each component (data, model, training engine, inference) defines its settings once, as a
:class:`Section`; the run configuration is made of those same classes, so nothing maps one onto
another. Durations are written as text (``'128ep'``) in YAML, checkpoints and dumps, and parsed on
the way in.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, PlainSerializer, PlainValidator, ValidationError

from segrecipes.duration import Duration

_NO_INTERVAL = (None, "", "none", 0, "0")


def _optional_duration(value: Any) -> Duration | None:
    return None if value in _NO_INTERVAL else Duration.parse(value)


def _optional_str(value: Duration | None) -> str | None:
    return None if value is None else str(value)


DurationField = Annotated[Duration, PlainValidator(Duration.parse), PlainSerializer(str)]
IntervalField = Annotated[Duration | None, PlainValidator(_optional_duration), PlainSerializer(_optional_str)]
# Method constants that were plain batch counts: a bare number still means batches.
BatchesField = Annotated[Duration, PlainValidator(Duration.parse_batches), PlainSerializer(str)]


class Section(BaseModel):
    """Settings that refuse unknown keys (typos) and validate every assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PythonSection(Section):
    """A section that people also build in Python (``TrainSettings(duration="40ba")``): a bad value raises
    ``error_type`` with one line naming the key as the config does (``train.duration: ...``). The
    validation error stays its ``__cause__``, from which the config words the same problem in its own way."""

    section: ClassVar[str] = ""
    error_type: ClassVar[type[Exception]] = ValueError

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise self.error_type(one_line(error, self.section)) from error


def one_line(error: ValidationError, section: str) -> str:
    """The first problem of ``error`` as ``section.key: message (got value)``."""
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"] if not isinstance(part, int))
    given = first.get("input")
    if first["type"] == "literal_error":
        return f"{section}.{key}: unknown value {given!r} (use {first['ctx']['expected']})"
    message = first["msg"].removeprefix("Value error, ")
    shown = "" if isinstance(given, dict) or not key else f" (got {given!r})"
    return f"{section}.{key}: {message}{shown}" if key else message
