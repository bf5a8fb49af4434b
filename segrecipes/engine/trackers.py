"""Where a run's numbers and images go besides ``metrics.jsonl``: TensorBoard, Weights & Biases or
MLflow, each a small adapter over its own client. Only the main process creates them, and they are
called between steps, never inside a collective.

Each tracker takes its settings from its library's usual environment: ``WANDB_PROJECT`` /
``WANDB_MODE`` / ``WANDB_DIR`` for W&B (``segrecipes`` by default, files under the run folder),
``MLFLOW_TRACKING_URI`` / ``MLFLOW_EXPERIMENT_NAME`` for MLflow.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import re
from pathlib import Path
from typing import Any, Protocol

import torch

from segrecipes.errors import ConfigError

TRACKERS = ("tensorboard", "wandb", "mlflow")


class Tracker(Protocol):
    def log_scalars(self, values: dict[str, float], step: int) -> None: ...
    def log_image(self, tag: str, image: torch.Tensor, step: int) -> None: ...
    def log_summary(self, summary: dict[str, float | str]) -> None: ...
    def flush(self) -> None: ...  # what the run folder should hold by now (a checkpoint copies it elsewhere)
    def close(self, failed: bool = False) -> None: ...


def check_trackers(names: list[str] | tuple[str, ...]) -> None:
    """Refuse unknown trackers and those whose package is missing, naming the extra to install."""
    for name in names:
        if name not in TRACKERS:
            raise ConfigError(f"train.loggers: unknown logger {name!r} (use {', '.join(TRACKERS)})")
        if importlib.util.find_spec(name) is None:  # each logger is its own package
            hint = f"pip install 'segrecipes[{name}]'" if name != "tensorboard" else "pip install tensorboard"
            raise ConfigError(f"train.loggers: {name} is not installed: {hint}")


def open_trackers(names: list[str] | tuple[str, ...], run_dir: Path, config: dict[str, Any] | None) -> list[Tracker]:
    check_trackers(names)
    makers = {"tensorboard": TensorBoardTracker, "wandb": WandbTracker, "mlflow": MLflowTracker}
    return [makers[name](run_dir, config) for name in names]


def flat_params(config: dict[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """``{"optimizer": {"lr": 0.08}}`` -> ``{"optimizer.lr": 0.08}`` (lists as text): what trackers take as parameters."""
    flat: dict[str, Any] = {}
    for key, value in (config or {}).items():
        if isinstance(value, dict):
            flat.update(flat_params(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
    return flat


class TensorBoardTracker:
    """Events under ``run_dir/tensorboard``. A writer that failed (a full disk) stays broken, so it is
    dropped and the next call opens a new event file: the logs go on once there is room again."""

    def __init__(self, run_dir: Path, config: dict[str, Any] | None) -> None:
        self.folder = run_dir / "tensorboard"
        self._writer: Any = None

    def _call(self, name: str, *args: Any) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter  # imported lazily: tensorboard is slow to import

            self._writer = SummaryWriter(log_dir=str(self.folder))
        try:
            getattr(self._writer, name)(*args)
        except Exception:
            writer, self._writer = self._writer, None
            with contextlib.suppress(Exception):
                writer.close()
            raise

    def log_scalars(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self._call("add_scalar", key, value, step)

    def log_image(self, tag: str, image: torch.Tensor, step: int) -> None:
        self._call("add_image", tag, image, step)

    def log_summary(self, summary: dict[str, float | str]) -> None:
        self._call("add_text", "summary", "\n".join(f"{key}: {value}  " for key, value in summary.items()))

    def flush(self) -> None:
        if self._writer is not None:
            self._call("flush")  # else up to two minutes of events stay in memory

    def close(self, failed: bool = False) -> None:
        if self._writer is not None:
            self._call("close")
            self._writer = None


class WandbTracker:
    def __init__(self, run_dir: Path, config: dict[str, Any] | None) -> None:
        import wandb

        self.wandb = wandb
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "segrecipes"), name=run_dir.name,
                              dir=os.environ.get("WANDB_DIR", str(run_dir)), config=config or {})

    def log_scalars(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def log_image(self, tag: str, image: torch.Tensor, step: int) -> None:
        self.run.log({tag: self.wandb.Image(image.permute(1, 2, 0).numpy())}, step=step)

    def log_summary(self, summary: dict[str, float | str]) -> None:
        self.run.summary.update(summary)

    def flush(self) -> None:
        """Nothing to do: W&B streams to its own service, not into the run folder."""

    def close(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)


class MLflowTracker:
    _UNSAFE = re.compile(r"[^\w\-. ]")  # what MLflow refuses in a metric name's path component

    def __init__(self, run_dir: Path, config: dict[str, Any] | None) -> None:
        import mlflow

        self.mlflow = mlflow
        self._names: dict[str, str] = {}
        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", "segrecipes"))
        self.run = mlflow.start_run(run_name=run_dir.name)
        params = flat_params(config)
        for start in range(0, len(params), 100):  # MLflow takes at most 100 parameters per call
            mlflow.log_params(dict(list(params.items())[start:start + 100]))

    def _name(self, key: str) -> str:
        """``key`` as MLflow takes it: clean path components (no empty, '.' or '..'), at most 250
        characters; two keys that clean alike stay apart (a short hash)."""
        if key in self._names:
            return self._names[key]
        parts = [self._UNSAFE.sub("_", part).strip() or "_" for part in key.split("/")]
        name = "/".join("_" if set(part) <= {"."} else part for part in parts)
        if len(name) > 250 or name in self._names.values():
            digest = hashlib.sha1(key.encode()).hexdigest()[:8]
            name = f"{name[:240]}-{digest}"
        self._names[key] = name
        return name

    def log_scalars(self, values: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics({self._name(key): value for key, value in values.items()}, step=step)

    def log_image(self, tag: str, image: torch.Tensor, step: int) -> None:
        self.mlflow.log_image(image.permute(1, 2, 0).numpy(), f"{self._name(tag)}/step-{step}.png")

    def log_summary(self, summary: dict[str, float | str]) -> None:
        numbers = {self._name(f"final/{key}"): value for key, value in summary.items() if isinstance(value, float)}
        self.mlflow.log_metrics(numbers)
        self.mlflow.set_tags({key: value for key, value in summary.items() if isinstance(value, str)})

    def flush(self) -> None:
        """Nothing to do: MLflow sends each call to its tracking store at once."""

    def close(self, failed: bool = False) -> None:
        self.mlflow.end_run(status="FAILED" if failed else "FINISHED")
