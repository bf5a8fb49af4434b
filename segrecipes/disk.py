"""Writes that fail for want of disk (ENOSPC, EDQUOT, EFBIG, EIO): their one-line description, the
temporary files they must not leave behind, and the writes a run can do without.

Every file a run writes goes through a temporary name of its process (:func:`temporary_path`) and a
rename, so a failed or killed writer leaves only that temporary; the writer removes it at once, and the
next start removes those of dead processes (:func:`remove_stale_temporaries`), which otherwise keep
the disk full.
"""

from __future__ import annotations

import os
import re
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# ".<name>.tmp-<pid>" (a file being written) or ".<name>.link-<pid>" (a hard link being swapped in)
_TEMPORARY = re.compile(r"^\..+\.(?:tmp|link)-(\d+)$")


def temporary_path(path: Path, kind: str = "tmp") -> Path:
    """Where this process writes ``path`` before renaming it into place."""
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files under ``folder`` (recursively) whose writing process is gone; returns them."""
    removed = []
    if not folder.is_dir():
        return removed
    for path in folder.rglob(".*"):
        match = _TEMPORARY.match(path.name)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def os_error_of(error: BaseException) -> OSError | None:
    """The OSError behind ``error``, itself or a cause: ``torch.save`` reports a failed write as a
    RuntimeError raised while handling the OSError."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def free_bytes(path: Path) -> int | None:
    """Bytes free to this user on the filesystem of ``path`` (its nearest existing folder); None if unknown."""
    for folder in (path, *path.parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


def size_text(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def write_failure(what: str, path: Path, error: OSError, needed: int | None = None) -> str:
    """One line: what could not be written, where, why, how much it needed and how much is free."""
    free = free_bytes(path)
    room = [f"needs {size_text(needed)}" if needed else "", f"{size_text(free)} free" if free is not None else ""]
    shown = ", ".join(part for part in room if part)
    return f"could not write {what} ({path}): {error.strerror or error}" + (f" ({shown})" if shown else "")


class OptionalWrites:
    """The writes a run can do without (log rows, TensorBoard, samples, reports, caches): a failing one
    is a warning, once until it works again, and never stops the run. Other errors pass through."""

    def __init__(self) -> None:
        self._failing: set[str] = set()

    @contextmanager
    def attempt(self, what: str, path: Path) -> Iterator[None]:
        try:
            yield
        except Exception as error:
            cause = os_error_of(error)
            if cause is None:
                raise
            if what not in self._failing:
                self._failing.add(what)
                warnings.warn(f"{write_failure(what, path, cause)}; training goes on without it", stacklevel=3)
        else:
            self._failing.discard(what)
