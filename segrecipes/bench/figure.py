"""A matplotlib figure without pyplot, for the benchmarks' plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def new_figure(width: float = 7.0, height: float = 4.5) -> tuple[Any, Any, list[str]]:
    """(figure, axes, the colour cycle): a figure that needs no display and holds no global state."""
    import matplotlib  # imported here: matplotlib is slow to import for every command
    from matplotlib.figure import (
        Figure,  # no pyplot: no GUI backend, no global figure state
    )

    canvas = Figure(figsize=(width, height))
    return canvas, canvas.subplots(), matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]




def save_figure(figure: Any, axes: Any, path: Path, xlabel: str, ylabel: str) -> None:
    """Label the axes, add a light grid and the legend, and write ``path`` (its folder made)."""
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
