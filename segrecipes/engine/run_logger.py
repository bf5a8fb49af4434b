"""The run folder: resolved config, metrics.jsonl, TensorBoard events and summary.json (rank 0 only)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from segrecipes.cache import json_safe, write_json, write_text_atomic
from segrecipes.disk import OptionalWrites
from segrecipes.engine.trackers import Tracker, open_trackers


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class RunLogger:
    """Appends rows to ``metrics.jsonl`` and sends their numbers to the ``trackers`` (TensorBoard, W&B,
    MLflow) under ``run_dir``; does nothing when disabled (off rank 0, or without a run folder).
    ``config`` is written to ``config.yaml`` and given to the trackers."""

    def __init__(self, run_dir: Path | None, config: dict[str, Any] | None = None, enabled: bool = True,
                 trackers: tuple[str, ...] | list[str] = ("tensorboard",)) -> None:
        self.run_dir = run_dir
        self.enabled = enabled and run_dir is not None
        self._trackers: list[Tracker] = []
        self.writes = OptionalWrites()  # a full disk costs these files' rows, never the run
        if not self.enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        if config is not None:
            with self.writes.attempt("config.yaml", run_dir):
                write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
        self._trackers = open_trackers(trackers, run_dir, config)

    def log(self, row: dict[str, Any], group: str) -> None:
        """One row; its numbers also go to the trackers as ``group/key`` at the row's step, and a
        per-class mapping (``iou: {class: value}``) as ``group_key/class``: one chart section per metric."""
        if not self.enabled:
            return
        with self.writes.attempt("metrics.jsonl", self.run_dir):
            _append(self.run_dir / "metrics.jsonl", json.dumps(json_safe(row)) + "\n")
        values = {}
        for key, value in row.items():
            if isinstance(value, dict):
                values.update({f"{group}_{key}/{name}": item for name, item in value.items() if _is_number(item)})
            elif key != "step" and _is_number(value):
                values[f"{group}/{key}"] = value
        self._each("log_scalars", values, int(row.get("step", 0)))

    def log_image(self, tag: str, image: Any, step: int) -> None:
        """A uint8 (3, H, W) image to the trackers."""
        self._each("log_image", tag, image, step)

    def summary(self, data: dict[str, Any], best_checkpoint: Path | None = None) -> None:
        """``summary.json``, and the final numbers (and the best checkpoint's path) to the trackers."""
        if not self.enabled:
            return
        with self.writes.attempt("summary.json", self.run_dir):
            write_json(self.run_dir / "summary.json", data)
        final = {key: float(value) for key, value in data.items() if _is_number(value)}
        if best_checkpoint is not None:
            final["best_checkpoint"] = str(best_checkpoint)
        self._each("log_summary", final)

    def flush(self) -> None:
        """The trackers' buffered rows into the run folder (TensorBoard keeps up to two minutes in memory)."""
        self._each("flush")

    def close(self, failed: bool = False) -> None:
        """End the trackers' runs (``failed``: as failed, for the trackers that keep a status)."""
        self._each("close", failed)
        self._trackers = []

    def _each(self, call: str, *args: Any) -> None:
        """``call`` on every tracker; one that cannot write its files (a full disk) misses those rows."""
        for tracker in self._trackers:
            with self.writes.attempt(type(tracker).__name__.removesuffix("Tracker"), self.run_dir):
                getattr(tracker, call)(*args)


def _append(path: Path, text: str) -> None:
    """Append ``text``; a write that fails part-way is cut off again, so no half row is ever left."""
    data = text.encode()
    with open(path, "ab", buffering=0) as handle:  # unbuffered: nothing left to write when it is closed
        start = written = handle.tell()
        try:
            while written < start + len(data):
                written += handle.write(data[written - start:])
        except OSError:
            handle.truncate(start)
            raise
