"""What a run leaves behind besides its checkpoints: the evaluation history, the best evaluation
(``best.pt``), the log rows (``metrics.jsonl``, TensorBoard) and ``summary.json``."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torchvision.io import encode_png

from segrecipes.cache import write_bytes_atomic

from segrecipes.engine.checkpoint import BEST, atomic_save
from segrecipes.engine.clock import Clock
from segrecipes.engine.report import write_report
from segrecipes.engine.run_logger import RunLogger
from segrecipes.evaluation.confusion import write_confusion
from segrecipes.evaluation.metrics import SegMetrics


class RunRecord:
    """The rows and scores of one run; files are written only with a ``run_dir`` and on rank 0 (``enabled``).

    ``best_metric`` (e.g. ``miou``, ``mdice``, ``iou/Car``) decides ``best.pt``; every rank tracks it
    (the metrics are all-reduced, so all agree), which is what :meth:`stalled` counts on."""

    def __init__(self, run_dir: Path | None, config: dict[str, Any] | None, enabled: bool,
                 best_metric: str = "miou", loggers: tuple[str, ...] | list[str] = ("tensorboard",)) -> None:
        self.run_dir = run_dir if enabled else None
        self.logger = RunLogger(run_dir, config, enabled, loggers)
        self.history: list[dict[str, Any]] = []
        self.best_metric = best_metric
        self.best = -math.inf
        self.since_best = 0  # evaluations since the best one

    @staticmethod
    def where(clock: Clock) -> dict[str, Any]:
        """The position of a row: every row says when it happened in each unit."""
        return {"step": clock.step, "epoch": clock.epochs, "samples": clock.samples, "elapsed_s": clock.elapsed_s}

    def log_step(self, clock: Clock, values: dict[str, Any]) -> None:
        self.logger.log({**self.where(clock), **values}, "train")

    def log_evaluation(
        self, clock: Clock, metrics: SegMetrics, best_state: Callable[[], dict[str, Any] | None]
    ) -> None:
        """Record an evaluation (with its per-class rows); a new best writes ``best.pt`` from
        ``best_state()`` (None: not savable, e.g. non-finite weights, and then not the best)."""
        row = {**self.where(clock), **metrics.to_dict()}
        self.history.append(row)
        self.logger.log(row, "val")
        value = metrics.value(self.best_metric)
        if not value > self.best:  # NaN never improves
            self.since_best += 1
            return
        # decided from the (all-reduced) metric alone, so every rank agrees on stopping
        self.best, self.since_best = value, 0
        if self.run_dir is not None:
            state = best_state()  # None: weights not finite, not worth keeping
            if state is not None:
                with self.logger.writes.attempt(f"{BEST} (the best model so far stays the one before)",
                                                self.run_dir / "checkpoints"):
                    atomic_save({**state, "metrics": metrics.to_dict(), "best_metric": self.best_metric},
                                self.run_dir / "checkpoints" / BEST)

    def log_samples(self, clock: Clock, panels: dict[int, torch.Tensor]) -> None:
        """Sample predictions (index -> uint8 panel) as ``samples/step-N/sample-<index>.png`` and in TensorBoard."""
        if self.run_dir is None:
            return
        folder = self.run_dir / "samples" / f"step-{clock.step}"
        with self.logger.writes.attempt("sample images", folder):
            folder.mkdir(parents=True, exist_ok=True)
            for index, panel in panels.items():
                write_bytes_atomic(folder / f"sample-{index}.png", encode_png(panel).numpy().tobytes())
        for index, panel in panels.items():
            self.logger.log_image(f"samples/{index}", panel, clock.step)

    def stalled(self, patience: int | None) -> bool:
        """Whether ``patience`` evaluations in a row did not improve the best metric."""
        return patience is not None and self.since_best >= patience

    def early_stop_message(self, step: int, patience: int | None) -> str:
        best = (f"than {self.best:.2f}" if math.isfinite(self.best) else
                "(it was never defined: is the class absent from the validation data?)")
        return f"early stop at step {step}: {patience} evaluations without a better {self.best_metric} {best}"

    def summary(self, clock: Clock, metrics: SegMetrics | None, skipped_steps: int, stopped_early: bool = False,
                environment: dict[str, Any] | None = None, replaced_samples: int = 0) -> dict[str, Any]:
        """The final scores and the run's figures; written to ``summary.json``, with the confusion
        matrix of the last evaluation and ``report.html``."""
        mious = [row["miou"] for row in self.history if row.get("miou") is not None]
        summary = {
            **(metrics.to_dict() if metrics is not None else {}),
            "best_miou": max(mious) if mious else None,
            "best_metric": self.best_metric,
            "best_value": self.best if math.isfinite(self.best) else None,
            **self.where(clock),
            "train_s": clock.train_s,
            "train_images_per_s": clock.samples / max(clock.train_s, 1e-9),
            "skipped_steps": skipped_steps,
            "replaced_samples": replaced_samples,  # data.skip_bad: reads of files that broke during the run
            "stopped_early": stopped_early,
            "environment": environment or {},
            "history": self.history,
        }
        best = self.run_dir / "checkpoints" / BEST if self.run_dir is not None else None
        self.logger.summary(summary, best if best is not None and best.exists() else None)
        if self.run_dir is not None:
            try:  # the run is done and saved: a failing figure must not fail it
                if metrics is not None and metrics.confusion is not None:
                    write_confusion(metrics, self.run_dir)
                write_report(self.run_dir)
            except (OSError, ValueError, RuntimeError) as error:
                warnings.warn(f"{self.run_dir}: the confusion matrix or report.html could not be written: {error}",
                              stacklevel=2)
        return summary

    def state_dict(self) -> dict[str, Any]:
        return {"best": {"metric": self.best_metric, "value": self.best, "since": self.since_best},
                "history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state.get("history", []))
        best = state.get("best") or {"metric": "miou", "value": state.get("best_miou", -math.inf), "since": 0}
        if best["metric"] == self.best_metric:
            self.best, self.since_best = best["value"], best["since"]
        # else the metric changed on resume: the next evaluation is the first best by the new one

    def flush(self) -> None:
        self.logger.flush()

    def close(self, failed: bool = False) -> None:
        self.logger.close(failed)
