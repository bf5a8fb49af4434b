"""Checkpoints beside the loop (as timm's ``CheckpointSaver`` sits beside its train loop): what a
trainer's state is, writing it (every rank's random generators gathered, rank 0 writes, the remote run
folder gets a copy), the best model's state, and continuing from a state.

A state holds everything a resume needs, as tensors and plain containers: the model, the evaluation
model (EMA's average) when it differs, optimizer, grad scaler, methods, clock, the run record (history,
best score), the random generators of the process and of every rank, and what the data was.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from segrecipes.disk import free_bytes, os_error_of, remove_stale_temporaries, size_text, write_failure
from segrecipes.engine.checkpoint import LAST, CheckpointError, CheckpointWriteError, all_finite, newest_step, \
    rng_state, save_training_checkpoint, set_rng_state, state_bytes
from segrecipes.engine.distributed import DistInfo, gathered
from segrecipes.engine.interrupt import TrainingDiverged
from segrecipes.engine.clock import Clock
from segrecipes.engine.record import RunRecord
from segrecipes.engine.remote import RemoteMirror
from segrecipes.methods.base import Method


class Trainer(Protocol):
    """What a checkpoint is of: the parts of :class:`~segrecipes.engine.trainer.Trainer` it saves and restores."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    methods: Sequence[Method]
    clock: Clock
    record: RunRecord
    config: dict[str, Any] | None
    class_names: list[str]
    ignore_index: int

    def eval_model(self) -> nn.Module: ...


class Checkpointer:
    """Writes ``run_dir/checkpoints`` (keeping the newest ``keep_last``) and mirrors it; nothing without
    a run folder or off rank 0 (every rank still takes part in gathering the random states)."""

    def __init__(self, run_dir: Path | None, keep_last: int, dist: DistInfo, mirror: RemoteMirror | None = None,
                 max_failures: int = 3) -> None:
        self.run_dir, self.keep_last, self.dist, self.mirror = run_dir, keep_last, dist, mirror
        self.max_failures, self.failures = max_failures, 0
        if dist.is_main and run_dir is not None:
            _prepare(run_dir)

    def state(self, trainer: Trainer) -> dict[str, Any]:
        """Everything a resume needs, as tensors and plain containers."""
        eval_model = trainer.eval_model()
        return {
            "config": trainer.config,
            "model": trainer.model.state_dict(),
            "eval_model": eval_model.state_dict() if eval_model is not trainer.model else None,
            "optimizer": trainer.optimizer.state_dict(),
            "scaler": trainer.scaler.state_dict() if trainer.scaler else None,
            "methods": {method.name: method.state_dict() for method in trainer.methods},
            "clock": trainer.clock.state_dict(),
            **trainer.record.state_dict(),
            "rng": rng_state(),
            "data": data_info(trainer.class_names, trainer.ignore_index),
        }

    def best_state(self, trainer: Trainer) -> dict[str, Any] | None:
        """What ``best.pt`` holds: the evaluation model with what eval and predict need; None if not finite."""
        model = trainer.eval_model()
        return {"config": trainer.config, "model": model.state_dict(),
                "data": data_info(trainer.class_names, trainer.ignore_index),
                "clock": trainer.clock.state_dict()} if all_finite(model) else None

    def save(self, trainer: Trainer, final: bool = False) -> None:
        """Write a training checkpoint; refuses weights that are not finite. Every rank calls it at the same
        step: each rank's random generators are saved, so that dropout and MixUp draw after a resume what
        they would have drawn. A write that fails (a full disk) is a warning while fewer than
        ``max_failures`` failed in a row; beyond, or when the checkpoint is the run's ``final`` one (its
        end, an interruption), :class:`CheckpointWriteError` stops the run."""
        ranks = gathered(rng_state()) if self.dist.distributed else None
        if not self.dist.is_main or self.run_dir is None:
            return
        if not all_finite(trainer.model) or not all_finite(trainer.eval_model()):
            raise TrainingDiverged(f"non-finite weights at step {trainer.clock.step}; no checkpoint written")
        state = {**self.state(trainer), **({"rank_rng": ranks} if ranks else {})}
        try:
            path = save_training_checkpoint(state, self.run_dir / "checkpoints", self.keep_last)
        except Exception as error:
            self._failed(error, state, final)
            return
        self.failures = 0
        trainer.record.flush()  # the logs as of this checkpoint, for a copy of the folder (remote, or a user's)
        if self.mirror is not None:
            self.mirror.upload_checkpoint(path, self.keep_last)

    def resume_command(self) -> str:
        """What continues this run from its newest checkpoint."""
        return f"segrecipes train --resume {self.mirror.url if self.mirror is not None else self.run_dir}"

    def _failed(self, error: Exception, state: dict[str, Any], final: bool) -> None:
        cause = os_error_of(error)
        if cause is None:
            raise error
        self.failures += 1
        folder = self.run_dir / "checkpoints"
        step = state["clock"]["step"]
        problem = write_failure(f"the checkpoint of step {step}", folder, cause, state_bytes(state))
        good = newest_step(folder)
        last = f"the last good checkpoint is step {good}" if good is not None else "no checkpoint was written yet"
        if final or self.failures > self.max_failures:
            raise CheckpointWriteError(f"{problem}; {self.failures} failed in a row, {last}: free space, then "
                                       f"continue with: {self.resume_command()}") from None
        warnings.warn(f"{problem}; training goes on and the next checkpoint tries again ({last}; "
                      f"{self.max_failures - self.failures + 1} more failure(s) in a row stop the run)", stacklevel=3)

    def restore(self, trainer: Trainer, state: dict[str, Any]) -> None:
        """Continue from :meth:`state`, e.g. a checkpoint read by ``engine.checkpoint.load_checkpoint``."""
        saved = state["data"]["num_classes"]
        if saved and trainer.class_names and saved != len(trainer.class_names):
            raise CheckpointError(f"checkpoint has {saved} classes but the data has {len(trainer.class_names)}: "
                                  "resume on the data the run was trained on")
        trainer.model.load_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        if trainer.scaler is not None and state.get("scaler"):
            trainer.scaler.load_state_dict(state["scaler"])
        for method in trainer.methods:
            method.load_state_dict(state["methods"].get(method.name, {}))
        trainer.clock.load_state_dict(state["clock"])
        trainer.record.load_state_dict(state)
        ranks = state.get("rank_rng")  # this rank's own generators, when the run had as many ranks
        set_rng_state(ranks[self.dist.rank] if ranks and len(ranks) == self.dist.world_size else state["rng"])


def _prepare(run_dir: Path) -> None:
    """Before a run writes its folder: remove what dead processes left half-written, and warn when the
    disk has less room than the last checkpoint took (the next one would fail)."""
    for path in remove_stale_temporaries(run_dir):
        warnings.warn(f"removed {path}, left half-written by a process that is gone", stacklevel=3)
    last = run_dir / "checkpoints" / LAST
    free = free_bytes(run_dir)
    if last.is_file() and free is not None and free < last.stat().st_size:
        warnings.warn(f"{run_dir}: {size_text(free)} free, but a checkpoint takes {size_text(last.stat().st_size)}; "
                      "checkpoints will fail until space is freed", stacklevel=3)


def data_info(class_names: list[str], ignore_index: int) -> dict[str, Any]:
    """What a checkpoint records of the data, so that eval and predict rebuild the model for it."""
    return {"num_classes": len(class_names) or None, "class_names": class_names, "ignore_index": ignore_index}
