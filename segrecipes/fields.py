"""The building blocks of every component's settings: a strict pydantic section and duration fields.

Each component (data, model, training engine, inference) defines its settings once, as a
:class:`Section`; the run configuration is made of those same classes, so nothing maps one onto
another. Durations are written as text (``'128ep'``) in YAML, checkpoints and dumps, and parsed on
the way in.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer, PlainValidator

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
