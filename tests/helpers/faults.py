"""Faults the reliability tests inject: a preemption signal at a chosen step, and a free port for a process group."""

from __future__ import annotations

import signal
import socket

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
