"""Live progress on the console: a rich bar on a terminal, a plain line per logged step in logs, or nothing."""

from __future__ import annotations

import sys
from typing import Literal

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

ProgressMode = Literal["auto", "rich", "plain", "none"]


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
                TimeRemainingColumn(),
                console=self.console,
            )
            self._task = self._bar.add_task("train", total=total, status="")
            self._bar.start()

    def update(self, done: float, status: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, status=status)
        elif self.mode == "plain":
            print(f"[{done:.0f} {self.unit}] {status}", flush=True)

    def message(self, text: str) -> None:
        if self.mode != "none":
            self.console.print(text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
