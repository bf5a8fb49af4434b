"""HTTP downloads shared by datasets and model weights: a timeout, a progress bar, resume and digests.

It sits below the data and model layers so both use the same code; it raises :class:`FetchError`,
which each caller turns into its own error type (``DataError``, ``ModelError``) for the CLI.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60.0
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-\d+/(\d+|\*)$")


class FetchError(Exception):
    """A download that failed; the message names the URL and, when it broke off, how far it got."""


class IncompleteFetch(FetchError):
    """A download that stopped before the end of the body: the bytes received so far are on disk."""


def fetch(url: str, target: Path, progress: bool = True, timeout_s: float = TIMEOUT_S) -> Path:
    """Download ``url`` to ``target`` through ``target.part``, resuming a partial ``.part`` with an
    HTTP Range request (starting over when the server ignores it)."""
    part = target.with_name(target.name + ".part")
    try:
        fetch_into(url, part, progress, timeout_s, label=target.name)
    except IncompleteFetch as error:
        raise IncompleteFetch(f"{error}; run again to resume from {part.name}") from None
    os.replace(part, target)
    return target


def fetch_into(url: str, part: Path, progress: bool = True, timeout_s: float = TIMEOUT_S, label: str = "") -> None:
    """Complete ``part`` with the body of ``url``: continue after the bytes it already holds, or write
    it whole. A server silent for ``timeout_s`` seconds ends the download with an error."""
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as error:
        if error.code == 416 and start:  # nothing after the end of the .part: it is complete
            return
        raise FetchError(f"{url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise FetchError(f"{url}: cannot connect ({getattr(error, 'reason', error)})") from None
    with response:
        start, total = _resume_point(url, response, start)
        received = _copy(url, response, part, start, total, progress, label or part.name, timeout_s)
    if total is not None and received < total:
        raise IncompleteFetch(f"{url}: connection closed after {received} of {total} bytes")


def _resume_point(url: str, response: http.client.HTTPResponse, start: int) -> tuple[int, int | None]:
    """Where the body starts in the file and the file's total size (None when the server does not say)."""
    length = response.headers.get("Content-Length")
    if response.status != 206:  # a full body: start over
        return 0, int(length) if length else None
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    if not match or int(match.group(1)) != start:
        raise FetchError(f"{url}: the server answered a resume request with an unexpected range "
                         f"{response.headers.get('Content-Range')!r}")
    total = match.group(2)
    return start, int(total) if total != "*" else (start + int(length) if length else None)


def _copy(url: str, response: IO[bytes], part: Path, start: int, total: int | None, progress: bool, label: str,
          timeout_s: float) -> int:
    """Append the body to ``part`` (truncated to ``start`` first); returns the bytes now in ``part``."""
    columns = (TextColumn(label), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with open(part, "r+b" if start else "wb") as handle, Progress(*columns, disable=not progress) as bar:
        handle.truncate(start)
        handle.seek(start)
        task = bar.add_task("download", total=total, completed=start)
        received = start
        try:
            while chunk := response.read(CHUNK_BYTES):
                handle.write(chunk)
                received += len(chunk)
                bar.update(task, completed=received)
        except TimeoutError:
            silence = f"the server sent nothing for {timeout_s:g} s"
            raise IncompleteFetch(f"{url}: {silence} after {received} bytes") from None
        except (OSError, http.client.HTTPException) as error:
            cause = f"{type(error).__name__}: {error}"
            raise IncompleteFetch(f"{url}: interrupted after {received} bytes ({cause})") from None
    return received


def file_digests(path: Path, algorithms: set[str]) -> dict[str, str]:
    """Hex digests of ``path`` for each hashlib algorithm, in one read."""
    hashes = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            for digest in hashes.values():
                digest.update(chunk)
    return {name: digest.hexdigest() for name, digest in hashes.items()}
