"""Faults the reliability tests inject: a preemption signal at a chosen step, a disk that fills up, a dead
process's leftovers, and a free port for a process group."""

from __future__ import annotations

import resource
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from segrecipes.methods import Method, StepContext


class SignalAtStep(Method):
    """Sends SIGTERM to this process after a given step, as a scheduler's preemption would."""

    name = "signal_at_step"

    def __init__(self, step: int) -> None:
        self.step = step

    def after_step(self, context: StepContext) -> None:
        if context.step == self.step:
            signal.raise_signal(signal.SIGTERM)


def free_port() -> int:
    """A TCP port nobody listens on now, for a test's process group."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DiskFullBetween(Method):
    """From after step ``start`` until after step ``end`` no file of this process can grow past ``limit``
    bytes (``RLIMIT_FSIZE``, with SIGXFSZ ignored, so a write fails with EFBIG as on a full disk): a disk
    that fills up and is freed again. :meth:`free` lifts the limit (call it in a ``finally``)."""

    name = "disk_full_between"

    def __init__(self, start: int, end: int, limit: int = 1_000_000) -> None:
        self.start, self.end, self.limit = start, end, limit
        self._soft, self._hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        self._sigxfsz = signal.getsignal(signal.SIGXFSZ)

    def after_step(self, context: StepContext) -> None:
        if context.step == self.start:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.limit, self._hard))
        if context.step == self.end:
            self.free()

    def free(self) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (self._soft, self._hard))
        signal.signal(signal.SIGXFSZ, self._sigxfsz)


def small_files(limit: int) -> Callable[[], None]:
    """A ``preexec_fn`` for a subprocess whose files cannot grow past ``limit`` bytes (writes fail with EFBIG)."""

    def limit_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    return limit_files


def dead_pid() -> int:
    """The process id of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def temporaries(folder: Path) -> list[Path]:
    """The temporary files (``.NAME.tmp-PID`` / ``.NAME.link-PID``) left anywhere under ``folder``."""
    return [path for path in folder.rglob(".*") if ".tmp-" in path.name or ".link-" in path.name]
