"""What a run leaves behind besides its checkpoints: the evaluation history, the best evaluation
(``best.pt``), the log rows (``metrics.jsonl``, TensorBoard) and ``summary.json``."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from segrecipes.engine.checkpoint import BEST, atomic_save
from segrecipes.engine.clock import Clock
from segrecipes.engine.run_logger import RunLogger
from segrecipes.evaluation.metrics import SegMetrics


class RunRecord:
    """The rows and scores of one run; files are written only with a ``run_dir`` and on rank 0 (``enabled``)."""

    def __init__(self, run_dir: Path | None, config: dict[str, Any] | None, enabled: bool) -> None:
        self.run_dir = run_dir if enabled else None
        self.logger = RunLogger(run_dir, config, enabled)
        self.history: list[dict[str, Any]] = []
        self.best_miou = -math.inf

    @staticmethod
    def where(clock: Clock) -> dict[str, Any]:
        """The position of a row: every row says when it happened in each unit."""
        return {"step": clock.step, "epoch": clock.epochs, "samples": clock.samples, "elapsed_s": clock.elapsed_s}

    def log_step(self, clock: Clock, values: dict[str, Any]) -> None:
        self.logger.log({**self.where(clock), **values}, "train")

    def log_evaluation(
        self, clock: Clock, metrics: SegMetrics, best_state: Callable[[], dict[str, Any] | None]
    ) -> None:
        """Record an evaluation; a new best writes ``best.pt`` from ``best_state()`` (None: not savable)."""
        row = {**self.where(clock), **metrics.summary()}
        self.history.append(row)
        self.logger.log(row, "val")
        if metrics.miou > self.best_miou and self.run_dir is not None:
            state = best_state()
            if state is not None:
                self.best_miou = metrics.miou
                atomic_save({**state, "metrics": metrics.to_dict()}, self.run_dir / "checkpoints" / BEST)

    def summary(self, clock: Clock, metrics: SegMetrics | None, skipped_steps: int) -> dict[str, Any]:
        """The final scores and the run's figures; written to ``summary.json``."""
        summary = {
            **(metrics.to_dict() if metrics is not None else {}),
            "best_miou": max(self.best_miou, metrics.miou) if metrics is not None else None,
            **self.where(clock),
            "train_s": clock.train_s,
            "train_images_per_s": clock.samples / max(clock.train_s, 1e-9),
            "skipped_steps": skipped_steps,
            "history": self.history,
        }
        self.logger.summary(summary)
        return summary

    def state_dict(self) -> dict[str, Any]:
        return {"best_miou": self.best_miou, "history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_miou = state.get("best_miou", -math.inf)
        self.history = list(state.get("history", []))

    def close(self) -> None:
        self.logger.close()
