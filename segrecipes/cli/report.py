"""``segrecipes report``: write a run's self-contained report.html (training writes it at the end too)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from segrecipes.engine.report import write_report


def report_command(run_dir: Annotated[Path, typer.Argument(help="The run folder.")]) -> None:
    """Write RUN_DIR/report.html: config, curves, per-class IoU, confusion matrix, samples, timing, environment."""
    print(f"wrote {write_report(run_dir)}")
