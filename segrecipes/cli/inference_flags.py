"""The inference flags ``eval`` and ``predict`` share: each overrides one key of the run's ``eval``
section (``eval.size`` for the protocol size), so a run evaluates the way it was configured unless told otherwise."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from segrecipes.config import RunConfig, build_config, merge_dicts

Protocol = Annotated[Optional[str], typer.Option(help="reference (resize to eval size) | standard (score at the "
                                                      "original size). Default: the run's eval.protocol.")]
TTA = Annotated[Optional[str], typer.Option(help="none | flip | ms-flip. Default: the run's eval.tta.")]
Scales = Annotated[Optional[str], typer.Option(help="ms-flip scales, e.g. 0.5,0.75,1.0,1.25,1.5,1.75. "
                                                    "Default: the run's eval.scales.")]
Mode = Annotated[Optional[str], typer.Option(help="whole | slide. Default: the run's eval.mode.")]
CropSize = Annotated[Optional[int], typer.Option(help="Sliding-window crop. Default: the run's eval.crop_size.")]
Stride = Annotated[Optional[int], typer.Option(help="Sliding-window stride. Default: the run's eval.stride.")]
EvalSize = Annotated[Optional[int], typer.Option(help="Protocol size (short side for standard). Default: the run's "
                                                      "eval.size.")]
BatchSize = Annotated[Optional[int], typer.Option(help="Images per forward pass where sizes allow. Default: the "
                                                       "run's eval.batch_size.")]


def overrides(source: str, *, eval_size: int | None = None, scales: str | None = None,
              **eval_keys: Any) -> dict[str, Any]:
    """The settings that were given (not None), as a config update; refused at once when invalid."""
    section = {key: value for key, value in eval_keys.items() if value is not None}
    if scales is not None:
        section["scales"] = [part.strip() for part in scales.split(",")]
    if eval_size is not None:
        section["size"] = eval_size
    update: dict[str, Any] = {"eval": section}
    build_config(update, source)
    return update


def apply(config: RunConfig, update: dict[str, Any], source: str) -> RunConfig:
    """``config`` with the flags' settings in place of the run's own."""
    return build_config(merge_dicts(config.to_dict(), update), source)
