"""Where a training step's time goes: data wait, forward, loss, backward, optimizer, methods.

A :class:`PhaseClock` charges the time since its last switch to the phase that was running; the
:class:`StepProbes` switch it from hooks the trainer already offers (module forward hooks on the
trainer's forward callable and loss, a multi-gradient hook marking the end of backward, optimizer
step hooks), so the trainer itself is untouched and every step's time lands in exactly one phase.

``methods`` is the remainder: the methods' own work (MixUp's blend, SAM's perturbation, EMA's
update) plus the engine's glue (normalization on the device, learning rate, zeroing gradients).
SAM's second forward and backward are counted as forward and backward, which they are.

On a GPU every switch synchronizes the device first, so a phase is charged for its kernels and not
only their launches; that costs a little overlap, which ``--no-breakdown`` avoids.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch.autograd.graph import register_multi_grad_hook

from segrecipes.bench.driver import synchronize
from segrecipes.engine.trainer import Trainer

PHASES = ("data", "forward", "loss", "backward", "optimizer", "methods")
DEFAULT_PHASE = "methods"


class PhaseClock:
    """Accumulates wall time per phase; :meth:`switch` closes the running phase and opens another."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self._phase: str | None = None
        self._since = 0.0

    def switch(self, phase: str | None) -> None:
        """Start charging ``phase`` (None stops the clock)."""
        synchronize(self.device)
        now = time.perf_counter()
        if self._phase is not None:
            self.seconds[self._phase] += now - self._since
        self._phase, self._since = phase, now

    def switcher(self, phase: str) -> Callable[..., None]:
        """A hook callback (any arguments, returns None) that switches to ``phase``."""

        def switch(*_: Any) -> None:
            self.switch(phase)

        return switch


class StepProbes:
    """Hooks on ``trainer`` that drive ``clock``; a context manager that removes them on exit."""

    def __init__(self, trainer: Trainer, clock: PhaseClock) -> None:
        self.trainer = trainer
        self.clock = clock
        self._handles: list[Any] = []

    def __enter__(self) -> StepProbes:
        trainer, clock = self.trainer, self.clock
        params = [param for param in trainer.model.parameters() if param.requires_grad]
        self._handles = [
            # The outermost callable the trainer runs (the model, or its DDP / compiled wrapper): its
            # own hooks run eagerly, outside any compiled graph.
            trainer.forward.register_forward_pre_hook(clock.switcher("forward")),
            trainer.forward.register_forward_hook(clock.switcher(DEFAULT_PHASE)),
            trainer.loss_fn.register_forward_pre_hook(clock.switcher("loss")),
            # backward starts right after the loss (the trainer only scales it first) ...
            trainer.loss_fn.register_forward_hook(clock.switcher("backward")),
            # ... and ends when every parameter's gradient has been computed.
            register_multi_grad_hook(params, clock.switcher(DEFAULT_PHASE), mode="all"),
            trainer.optimizer.register_step_pre_hook(clock.switcher("optimizer")),
            trainer.optimizer.register_step_post_hook(clock.switcher(DEFAULT_PHASE)),
        ]
        return self

    def __exit__(self, *_: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
