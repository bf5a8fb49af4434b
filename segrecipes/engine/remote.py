"""A run folder on object storage (``s3://``, ``gs://``, any fsspec protocol whose package is installed).

The run writes a local staging folder exactly as it writes a local run folder, and a :class:`RemoteMirror`
copies it up: at each checkpoint and at the end of the run. Object stores have no rename and no hard link,
so the remote ``last`` is a small pointer object, ``checkpoints/last``, holding the name of the newest
complete step file. It is written only after that file's upload has finished, and older step files are
deleted only after it is written: a kill at any moment leaves a ``last`` that names a complete checkpoint.
Credentials come from the storage library's own configuration (``AWS_*`` variables, ``~/.aws``, ...);
nothing of them is written to the run folder.
"""

from __future__ import annotations

import hashlib
import shutil
import warnings
from pathlib import Path
from typing import Any

from fsspec import AbstractFileSystem
from fsspec.core import split_protocol, url_to_fs
from fsspec.registry import get_filesystem_class, known_implementations

from segrecipes.cache import cache_folder
from segrecipes.engine.checkpoint import BEST, CheckpointError, first_loadable, is_step_file, load_checkpoint
from segrecipes.errors import ConfigError

POINTER = "last"  # checkpoints/last: the name of the newest complete step file
# protocols whose package is one of this project's extras
_EXTRAS = {"s3": "s3", "s3a": "s3"}


def is_url(location: str) -> bool:
    """Whether ``location`` names a folder of a storage protocol (``s3://...``) rather than a local path."""
    protocol = split_protocol(location)[0]
    return protocol is not None and protocol not in ("file", "local")


def staging_folder(url: str, rank: int = 0) -> Path:
    """Where the run behind ``url`` is written before its upload: ``<cache>/runs/<hash of the url>``
    (``$SEGRECIPES_CACHE_DIR``, default ``~/.cache/segrecipes``). A rank other than 0 writes nothing and only
    downloads the checkpoint it resumes from, into a folder of its own so that ranks never share files."""
    digest = hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]
    return cache_folder() / "runs" / (digest if rank == 0 else f"{digest}-rank{rank}")


def missing_package_error(url: str, protocol: str, error: ImportError) -> ConfigError:
    """The one-line error for a protocol whose package is not installed, with the ``pip install`` to run."""
    cause = error.__cause__
    module = cause.name if isinstance(cause, ModuleNotFoundError) and cause.name else None
    package = module or known_implementations[protocol]["class"].split(".")[0]
    extra = _EXTRAS.get(protocol)
    command = f"pip install 'segrecipes[{extra}]'" if extra else f"pip install {package}"
    return ConfigError(f"{url}: {protocol}:// needs {package}, which is not installed: {command}")


def filesystem(url: str) -> tuple[AbstractFileSystem, str]:
    """The filesystem of ``url`` and the folder's path on it; an unknown protocol or a missing package is a
    :class:`ConfigError` naming the ``pip install`` to run, raised before any work."""
    protocol = split_protocol(url)[0]
    try:
        get_filesystem_class(protocol)
    except ImportError as error:
        raise missing_package_error(url, protocol, error) from None
    except ValueError:
        raise ConfigError(f"{url}: unknown storage protocol {protocol}:// (fsspec knows s3, gs, az, hdfs, sftp, ...): "
                          "pip install the fsspec implementation that provides it") from None
    # a new instance: credentials and endpoint are read from the environment when one is made
    fs, path = url_to_fs(url, skip_instance_cache=True)
    return fs, path.rstrip("/")


class UploadError(RuntimeError):
    """The run's files could not be copied to its remote folder at the end of the run."""


def _reason(error: Exception) -> str:
    """The storage library's error in one line (every library raises its own types; the message is what matters)."""
    first = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def check_writable(fs: AbstractFileSystem, root: str, url: str) -> None:
    """Write and delete a probe object, so that a wrong bucket, endpoint or credentials end the run before
    it trains rather than at its first checkpoint."""
    probe = f"{root}/.segrecipes-probe"
    try:
        fs.pipe_file(probe, b"")
        fs.rm_file(probe)
    except Exception as error:  # every storage library raises its own types
        raise ConfigError(f"{url}: cannot write to the run folder ({_reason(error)})") from None


def mirrored(relative: str) -> bool:
    """Whether a file of the staging folder is copied as it is: not a temporary or hidden file, and not a
    training checkpoint (those are uploaded by :meth:`RemoteMirror.upload_checkpoint`); ``best.pt`` is."""
    parts = relative.split("/")
    if any(part.startswith(".") for part in parts):
        return False
    return not (parts[0] == "checkpoints" and relative != f"checkpoints/{BEST}")


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


class RemoteMirror:
    """The remote copy ``url`` of a run folder written to the local staging folder ``local`` first."""

    def __init__(self, url: str, fs: AbstractFileSystem, root: str, local: Path) -> None:
        self.url, self.fs, self.root, self.local = url.rstrip("/"), fs, root, local
        self._uploaded: dict[str, tuple[int, int]] = {}  # relative path -> (size, mtime) when last uploaded
        self._pending: tuple[Path, int] | None = None  # the newest checkpoint, when its upload failed

    def _remote(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def step_files(self) -> list[str]:
        """The names of the remote step files, oldest first (their zero-padded names sort by step)."""
        folder = self._remote("checkpoints")
        self.fs.invalidate_cache(folder)  # listings are cached; another process may have written since
        try:
            names = [path.rstrip("/").rsplit("/", 1)[-1] for path in self.fs.ls(folder, detail=False)]
        except FileNotFoundError:
            return []
        return sorted(name for name in names if is_step_file(name))

    def checkpoint_names(self) -> list[str]:
        """The remote checkpoints to try, newest first: the one ``last`` points at, then the other step files."""
        steps = self.step_files()
        try:
            last = self.fs.cat_file(self._remote(f"checkpoints/{POINTER}")).decode().strip()
        except FileNotFoundError:
            last = None
        return ([last] if last in steps else []) + [name for name in reversed(steps) if name != last]

    def has_checkpoint(self) -> bool:
        return bool(self.checkpoint_names())

    def latest_checkpoint(self) -> tuple[str, dict[str, Any]]:
        """The newest loadable remote checkpoint (its URL and state), skipping corrupt ones with a warning,
        as :func:`~segrecipes.engine.checkpoint.latest_checkpoint` does for a local folder."""
        names = self.checkpoint_names()
        if not names:
            raise CheckpointError(f"{self.url}: no checkpoint found under {self.url}/checkpoints")
        return first_loadable([f"{self.url}/checkpoints/{name}" for name in names], self._load, self.url)

    def _load(self, url: str) -> dict[str, Any]:
        """Download one checkpoint and read it; errors name ``url``. The download is deleted once read: the
        staging folder holds only what this run writes."""
        name = url.rsplit("/", 1)[-1]
        path = self.local / f".{name}.download"
        try:
            self.fs.get_file(self._remote(f"checkpoints/{name}"), str(path))
            return load_checkpoint(path)
        except FileNotFoundError:
            raise CheckpointError(f"{url}: checkpoint not found") from None
        except CheckpointError as error:
            raise CheckpointError(str(error).replace(str(path), url)) from None
        finally:
            path.unlink(missing_ok=True)

    def pull(self) -> None:
        """Download the remote folder's files but its training checkpoints (``metrics.jsonl``, TensorBoard
        events, ``best.pt``, ...) into the staging folder, so that a resumed run continues them."""
        self.fs.invalidate_cache(self.root)
        for remote in self.fs.find(self.root):
            relative = remote[len(self.root) + 1:]
            if mirrored(relative):
                path = self.local / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(remote, str(path))
                self._uploaded[relative] = _stamp(path)

    def sync(self) -> None:
        """Upload the staging folder's files that changed since their last upload (checkpoints aside)."""
        for path in sorted(self.local.rglob("*")):
            relative = path.relative_to(self.local).as_posix()
            if not mirrored(relative) or not path.is_file():
                continue
            stamp = _stamp(path)
            if self._uploaded.get(relative) != stamp:
                self.fs.put_file(str(path), self._remote(relative))
                self._uploaded[relative] = stamp

    def upload_checkpoint(self, path: Path, keep_last: int) -> None:
        """After the local checkpoint ``path`` (``step-N.pt``) is written: upload it, sync the other files,
        then point ``last`` at it, then prune. Each starts only once the one before has completed.

        A failed upload (a network blip, a store refusing for a while) costs that upload, not the run: a
        warning, ``last`` still names a complete earlier checkpoint, and the next checkpoint or the end of the
        run (:meth:`finish`) uploads again."""
        try:
            self._upload_checkpoint(path, keep_last)
        except Exception as error:  # every storage library raises its own types
            self._pending = (path, keep_last)
            warnings.warn(f"{self.url}: {path.name} not uploaded ({_reason(error)}); it is kept in {path.parent} "
                          "and the next checkpoint is uploaded again", stacklevel=2)
        else:
            self._pending = None

    def finish(self) -> None:
        """At the end of the run: the newest checkpoint if its upload failed, then every file that changed. A
        failure now is an :class:`UploadError` that says where the files are."""
        try:
            if self._pending is not None:
                self._upload_checkpoint(*self._pending)
                self._pending = None
            self.sync()
        except Exception as error:  # every storage library raises its own types
            raise UploadError(f"{self.url}: the end of the run could not be uploaded ({_reason(error)}); the run "
                              f"folder is in {self.local}: copy it there before another run with this --run-dir "
                              "empties it") from None

    def _upload_checkpoint(self, path: Path, keep_last: int) -> None:
        self.fs.put_file(str(path), self._remote(f"checkpoints/{path.name}"))
        self.sync()
        self.fs.pipe_file(self._remote(f"checkpoints/{POINTER}"), f"{path.name}\n".encode())
        self._prune(path.name, keep_last)

    def _prune(self, current: str, keep_last: int) -> None:
        """Delete the step files but ``current`` (what ``last`` names) and the ``keep_last - 1`` before it.
        Newer ones are what a run resumed from an older checkpoint left behind (a corrupt one it skipped)."""
        steps = self.step_files()
        older = [name for name in steps if name < current]
        kept = {current, *older[::-1][: keep_last - 1]}
        for name in steps:
            if name not in kept:
                self.fs.rm_file(self._remote(f"checkpoints/{name}"))


def open_mirror(url: str, rank: int = 0) -> RemoteMirror:
    """The mirror of the run folder ``url``, with an empty staging folder (the remote folder is the run; the
    staging folder is rebuilt from it). Rank 0, which alone writes, checks first that it can write there."""
    fs, root = filesystem(url)
    local = staging_folder(url, rank)
    shutil.rmtree(local, ignore_errors=True)
    local.mkdir(parents=True)
    if rank == 0:
        check_writable(fs, root, url)
    return RemoteMirror(url, fs, root, local)
