"""Peak memory of a piece of work, measured as the resident set of a fresh process that does only that work.

``ru_maxrss`` is a process's lifetime peak, so each measurement gets its own spawned process: what the
parent already holds (or freed) does not count, and the baseline (the same process with the model loaded but no
work done) is measured the same way and subtracted by the caller.
"""

from __future__ import annotations

import multiprocessing
import resource
from collections.abc import Callable
from typing import Any


def _measured(target: Callable[..., dict[str, Any]], args: tuple[Any, ...]) -> dict[str, Any]:
    result = target(*args)
    return {**result, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # KiB on Linux


def peak_rss(target: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``target(*args)``'s result dict with the spawned process's peak resident memory (``peak_rss_mib``).
    ``target`` must be a module-level function (it is pickled by name)."""
    with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(_measured, (target, args))
