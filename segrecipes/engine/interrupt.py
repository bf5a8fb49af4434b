"""Graceful stops: SIGTERM/SIGINT end the run at the next step boundary with a checkpoint.

Preemption (SIGTERM from a scheduler or torchrun) and Ctrl-C should cost at most one step of work,
never a run. A second Ctrl-C falls back to the default behaviour, so a stuck run can still be killed.
"""

from __future__ import annotations

import signal
from types import FrameType, TracebackType


class RunInterrupted(Exception):
    """Raised after the checkpoint of an interrupted run is written; the CLI exits 0 on it."""


class TrainingDiverged(RuntimeError):
    """Too many consecutive non-finite steps; nothing non-finite was saved."""


class StopSignal:
    """Context manager recording SIGTERM/SIGINT instead of dying mid-step (``received``: the signal); the
    trainer agrees on it across ranks, so that all stop at the same step."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:  # second signal: give up gracefulness
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
        self.received = signum

    def __enter__(self) -> StopSignal:
        try:
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        except ValueError:  # not the main thread: signals cannot be caught here
            self._previous = {}
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
