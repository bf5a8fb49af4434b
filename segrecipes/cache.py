"""The bottom of the package's file handling: the cache folder, file fingerprints and atomic writes.

Every writer of a file that another process may read (a run's summary, a data-check or statistics
cache, a study's results) writes a temporary file beside it and renames it into place, so a reader
never sees half a file and a writer that dies leaves no partial one under the real name.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from segrecipes.disk import temporary_path

CACHE_ENV = "SEGRECIPES_CACHE_DIR"


def cache_folder() -> Path:
    """``$SEGRECIPES_CACHE_DIR``, else ``$XDG_CACHE_HOME/segrecipes``, else ``~/.cache/segrecipes``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "segrecipes"


def fingerprint(header: bytes, paths: Iterable[Path]) -> str:
    """A key that changes whenever ``header`` changes or a file of ``paths`` is added, removed, renamed
    or rewritten (its size or modification time changes); no file is read."""
    digest = hashlib.sha256(header)
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.name} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as None, so it is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def write_text_atomic(path: Path, text: str) -> None:
    """``text`` into ``path`` through a temporary file of this process and a rename; the folder is made."""
    write_bytes_atomic(path, text.encode())


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """``data`` into ``path`` as :func:`write_text_atomic` does; a failed write leaves no file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: Any, indent: int | None = 2) -> None:
    """``data`` as JSON (non-finite numbers as null), written atomically."""
    write_text_atomic(path, json.dumps(json_safe(data), indent=indent) + "\n")


def write_csv(path: Path, rows: Iterable[Sequence[Any]]) -> None:
    """``rows`` (the first one the header) as CSV, written atomically."""
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    write_text_atomic(path, text.getvalue())
