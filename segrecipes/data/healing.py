"""A training DataLoader that outlives its workers.

A worker killed (the kernel's out-of-memory killer sends SIGKILL) or crashed costs nothing: the loader
is rebuilt at the batch it was to deliver next, and since the sampler's order and every sample's
augmentation depend only on (seed, epoch, position), the run is bit-identical to one without the fault.

torch notices a dead worker in two ways: its SIGCHLD handler raises in the main thread wherever that
thread is (in the middle of an optimizer step, whose state could not be trusted after it), and the
fetch of a batch checks the workers every few seconds. While batches are handed out here the first is
switched off, so a death is always seen between steps, when the loader fetches.
"""

from __future__ import annotations

import signal
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from torch.utils.data import DataLoader

from .sampler import TrainSampler


class LoaderFailed(RuntimeError):
    """Workers died more often in one epoch than the run allows."""


class HealingLoader:
    """Iterates ``build()``'s DataLoader (batches of ``sampler``'s per-rank batch); a worker death rebuilds
    it at the same batch with a warning, up to ``max_restarts`` times in one epoch, then :class:`LoaderFailed`."""

    def __init__(self, build: Callable[[], DataLoader], sampler: TrainSampler, max_restarts: int = 3) -> None:
        self.build, self.sampler, self.max_restarts = build, sampler, max_restarts
        self.loader = build()

    @property
    def dataset(self) -> Any:
        return self.loader.dataset

    def __iter__(self) -> Iterator[Any]:
        restarts, delivered, first = 0, 0, self.sampler.start_batch
        while True:
            iterator = iter(self.loader)
            previous = _quiet_sigchld()
            try:
                for batch in iterator:
                    delivered += 1
                    yield batch
                return
            except RuntimeError as error:
                death = worker_death(error, iterator)
                if death is None:
                    raise
                restarts += 1
                if restarts > self.max_restarts:
                    raise LoaderFailed(f"{death}; {restarts} DataLoader restarts in this epoch, lower "
                                       "data.num_workers") from None
                warnings.warn(f"{death}; the DataLoader is restarted at the same sample (restart {restarts} of "
                              f"{self.max_restarts} allowed in an epoch)", stacklevel=2)
                _shut_down(iterator)
                self.loader = self.build()
                self.sampler.set_start_batch(first + delivered)
            finally:
                if previous is not None:
                    signal.signal(signal.SIGCHLD, previous)

    def close(self) -> None:
        """Stop the persistent workers now (a run that ends early, or a throwaway trainer), not at garbage
        collection, which may come late and then waits for each worker in turn."""
        _shut_down(self.loader._iterator)
        self.loader._iterator = None


def _quiet_sigchld() -> Any:
    """Switch torch's raising SIGCHLD handler off (see the module docstring); the handler to restore."""
    try:
        return signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    except (ValueError, AttributeError):  # not the main thread, or no SIGCHLD (Windows)
        return None


def worker_death(error: RuntimeError, iterator: Any) -> str | None:
    """What died and how, when ``error`` is torch's report of a dead worker; None for any other error."""
    text = str(error)
    if "DataLoader worker" not in text or not ("exited unexpectedly" in text or "killed by signal" in text):
        return None
    ended = [worker for worker in getattr(iterator, "_workers", []) if worker.exitcode is not None]
    if not ended:
        return text
    worker, code = ended[0], ended[0].exitcode
    if code < 0:
        name = signal.Signals(-code).name
        cause = " (often the out-of-memory killer: lower data.num_workers or the memory each worker takes)" \
            if -code == signal.SIGKILL else ""
        return f"DataLoader worker pid {worker.pid} was killed by {name}{cause}"
    return f"DataLoader worker pid {worker.pid} exited with code {code}"


def _shut_down(iterator: Any) -> None:
    """Stop the surviving workers of a broken iterator now rather than at garbage collection."""
    shut_down = getattr(iterator, "_shutdown_workers", None)
    if shut_down is not None:
        shut_down()
