"""Checkpoints that survive a kill at any instant, and the RNG state needed for an exact resume.

A checkpoint is written to a temporary file, flushed, fsync'ed and renamed to ``step-N.pt``; then
``last.pt`` is atomically swapped to a hard link of it, so a complete file exists at every moment.
Everything is loaded with ``torch.load(weights_only=True)``: a checkpoint holds tensors and plain
Python containers only, never pickled objects.
"""

from __future__ import annotations

import os
import random
import re
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from segrecipes.disk import remove_stale_temporaries, temporary_path

LAST = "last.pt"
BEST = "best.pt"
_STEP_FILE = re.compile(r"^step-(\d+)\.pt$")
T = TypeVar("T")


def is_step_file(name: str) -> bool:
    """Whether ``name`` is a training checkpoint's file name, ``step-N.pt``."""
    return _STEP_FILE.match(name) is not None


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with a one-line reason naming the file."""


class CheckpointWriteError(RuntimeError):
    """Checkpoints could not be written (a full disk) more often in a row than the run allows; the
    last good checkpoint is untouched and the message says how to continue from it."""


def atomic_save(obj: Any, path: Path) -> None:
    """Write ``obj`` so that ``path`` holds either the old or the new content, never a partial one; a
    failed write (a full disk) leaves no temporary file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def state_bytes(state: Any) -> int:
    """About what ``state`` takes on disk: the bytes of its tensors."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(state_bytes(value) for value in state.values())
    if isinstance(state, (list, tuple)):
        return sum(state_bytes(value) for value in state)
    return 0


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_training_checkpoint(state: dict[str, Any], folder: Path, keep_last: int) -> Path:
    """Save ``state`` as ``step-N.pt``, point ``last.pt`` at it (a hard link, swapped atomically) and
    keep only the newest ``keep_last`` step files."""
    path = folder / f"step-{state['clock']['step']:08d}.pt"
    atomic_save(state, path)
    link = temporary_path(folder / LAST, "link")
    try:
        link.unlink(missing_ok=True)
        os.link(path, link)
        os.replace(link, folder / LAST)
    finally:
        link.unlink(missing_ok=True)
    _fsync_dir(folder)
    history = sorted(p for p in folder.iterdir() if _STEP_FILE.match(p.name))
    for stale in history[: max(0, len(history) - keep_last)]:
        stale.unlink()
    remove_stale_temporaries(folder)  # those of a process killed mid-write
    return path


def newest_step(folder: Path) -> int | None:
    """The step of the newest ``step-N.pt`` in ``folder``, None if there is none."""
    steps = [int(match.group(1)) for path in folder.glob("step-*.pt") if (match := _STEP_FILE.match(path.name))]
    return max(steps, default=None)


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except Exception as error:  # a truncated or foreign file: many exception types are possible
        raise CheckpointError(f"{path}: not a readable segrecipes checkpoint ({type(error).__name__})") from None
    if not isinstance(state, dict) or "config" not in state or "model" not in state:
        raise CheckpointError(f"{path}: not a segrecipes checkpoint (no 'config'/'model' entries)")
    return _upgrade(state)


# names the first release used for the same things
_OLD_ROW_KEYS = {"val_miou": "miou", "val_pixel_acc": "pixel_acc"}


def _upgrade(state: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint of the first release in today's layout: ``progress`` is ``clock``, evaluation rows
    use the metric names of ``summary.json``."""
    if "progress" in state and "clock" not in state:
        state["clock"] = state.pop("progress")
    if "history" in state:
        state["history"] = [{_OLD_ROW_KEYS.get(key, key): value for key, value in row.items()}
                            for row in state["history"]]
    return state


def checkpoint_candidates(run_dir: Path) -> list[Path]:
    """Training checkpoints of a run folder, newest first."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    history = sorted((p for p in folder.iterdir() if _STEP_FILE.match(p.name)), reverse=True)
    last = folder / LAST
    return ([last] if last.exists() else []) + history


def latest_checkpoint(run_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The newest loadable checkpoint of ``run_dir``, skipping corrupt ones with a warning."""
    candidates = checkpoint_candidates(run_dir)
    if not candidates:
        raise CheckpointError(f"{run_dir}: no checkpoint found under {run_dir / 'checkpoints'}")
    return first_loadable(candidates, load_checkpoint, run_dir)


def first_loadable(candidates: Iterable[T], load: Callable[[T], dict[str, Any]], where: object
                   ) -> tuple[T, dict[str, Any]]:
    """The first of ``candidates`` (newest first) that ``load`` reads, skipping unreadable ones with a warning:
    a damaged file costs one checkpoint, not the run. Local and remote run folders share it."""
    for candidate in candidates:
        try:
            return candidate, load(candidate)
        except CheckpointError as error:
            warnings.warn(f"skipping unreadable checkpoint: {error}", stacklevel=3)
    raise CheckpointError(f"{where}: every checkpoint is unreadable")


def resolve_checkpoint(path: Path | str) -> tuple[Path, dict[str, Any]]:
    """A run folder (its newest checkpoint) or a checkpoint file."""
    path = Path(path)
    if path.is_dir():
        return latest_checkpoint(path)
    return path, load_checkpoint(path)


def all_finite(model: nn.Module) -> bool:
    """Whether every floating parameter and buffer of ``model`` is finite (never save or keep NaN weights)."""
    tensors = [tensor for tensor in model.state_dict().values() if tensor.is_floating_point()]
    return bool(torch.stack([torch.isfinite(tensor).all() for tensor in tensors]).all()) if tensors else True


TorchRNG = tuple[torch.Tensor, torch.Tensor | None]


def torch_rng_state(device: torch.device) -> TorchRNG:
    """What a training step draws from (dropout): torch's CPU generator, and ``device``'s on a GPU."""
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def set_torch_rng_state(state: TorchRNG, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": list(random.getstate()[1]),
        "python_pos": random.getstate()[2],
        "numpy": np.random.get_state()[1].tolist(),
        "numpy_pos": int(np.random.get_state()[2]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    np.random.set_state(("MT19937", np.array(state["numpy"], dtype=np.uint32), state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
