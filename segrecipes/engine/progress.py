"""Live progress on the console: a rich bar on a terminal, a plain line per logged step in logs, or nothing."""

from __future__ import annotations

import sys
from typing import Literal

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

ProgressMode = Literal["auto", "rich", "plain", "none"]


def format_seconds(seconds: float) -> str:
    """``3725`` -> ``1:02:05``; ``65`` -> ``1:05``."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressBar:
    def __init__(self, total: float, unit: str, mode: ProgressMode, enabled: bool) -> None:
        if mode == "auto":
            mode = "rich" if sys.stdout.isatty() else "plain"
        self.mode = mode if enabled else "none"
        self.unit = unit
        self.console = Console()
        self._bar: Progress | None = None
        if self.mode == "rich":
            self._bar = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                TextColumn("{task.completed:.0f}/{task.total:.0f} " + unit),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[eta]}"),
                console=self.console,
            )
            self._task = self._bar.add_task("train", total=total, status="", eta="")
            self._bar.start()

    def update(self, done: float, status: str, remaining_s: float | None = None) -> None:
        """Progress ``done`` with a status line; ``remaining_s`` is the run's own estimate (it counts
        evaluations and checkpoints, which a bar's speed estimate does not see)."""
        eta = "" if remaining_s is None else f"ETA {format_seconds(remaining_s)}"
        if self._bar is not None:
            self._bar.update(self._task, completed=done, status=status, eta=eta)
        elif self.mode == "plain":
            print(f"[{done:.0f} {self.unit}] {status}" + (f" {eta}" if eta else ""), flush=True)

    def message(self, text: str) -> None:
        if self.mode != "none":
            self.console.print(text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
