"""How long and how a run trains: everything the trainer needs that is not a component."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from segrecipes.duration import Duration
from segrecipes.engine.trackers import check_trackers
from segrecipes.errors import ConfigError


def _duration(value: Duration | str | None) -> Duration | None:
    return None if value is None else Duration.parse(value)


@dataclass
class TrainSettings:
    """Durations and intervals are :class:`~segrecipes.duration.Duration` or text (``"25ep"``,
    ``"1000ba"``, ``"39min"``); ``None`` switches an interval off.

    ``global_batch_size`` is the images per optimizer step over all processes; each device runs it in
    microbatches of at most ``device_microbatch_size`` (``auto``: the whole per-device batch, halved
    when it does not fit in GPU memory). ``precision`` ``auto`` is bf16 on a GPU; a CPU always runs fp32.
    Non-finite steps are skipped; ``max_bad_steps`` in a row end the run (checked on logging steps).
    ``best_metric`` (``miou``, ``mdice``, ``iou/<class>``, ...) decides ``best.pt``; with
    ``early_stop_patience`` the run ends after that many evaluations without a new best. ``log_images``
    validation images (chosen once from the seed) are rendered at each evaluation into the run folder.
    ``loggers`` (``tensorboard``, ``wandb``, ``mlflow``) receive what ``metrics.jsonl`` holds, on rank 0.
    Under torchrun a collective that waits ``dist_timeout`` seconds for another rank fails with a message
    naming the rank and the step, instead of the job hanging.
    """

    duration: Duration | str = "1ep"
    dur_base: Duration | str | None = None  # what ``dur`` values are fractions of (None: the duration)
    global_batch_size: int = 16
    device_microbatch_size: int | Literal["auto"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: bool = False
    sync_bn: bool = False
    seed: int = 42
    eval_interval: Duration | str | None = "1ep"
    checkpoint_interval: Duration | str | None = "1ep"
    log_interval: int = 10
    keep_last: int = 2
    eval_at_start: bool = False
    max_bad_steps: int = 20
    loggers: tuple[str, ...] | list[str] = ("tensorboard",)
    log_images: int = 8
    best_metric: str = "miou"
    early_stop_patience: int | None = None
    progress: Literal["auto", "rich", "plain", "none"] = "auto"
    dist_timeout: float = 1800.0  # seconds a collective waits for the other ranks before the run fails
    num_workers: int = 0
    pin_memory: bool = True
    persistent_workers: bool = True

    def __post_init__(self) -> None:
        self.duration = Duration.parse(self.duration)
        self.dur_base = _duration(self.dur_base)
        self.eval_interval = _duration(self.eval_interval)
        self.checkpoint_interval = _duration(self.checkpoint_interval)
        for name in ("global_batch_size", "log_interval", "keep_last", "max_bad_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name}: must be at least 1, got {getattr(self, name)}")
        check_trackers(self.loggers)
        if self.log_images < 0:
            raise ConfigError(f"train.log_images: must be 0 or more, got {self.log_images}")
        if self.early_stop_patience is not None and self.early_stop_patience < 1:
            raise ConfigError(f"train.early_stop_patience: must be at least 1, got {self.early_stop_patience}")
        if self.device_microbatch_size != "auto" and int(self.device_microbatch_size) < 1:
            raise ConfigError(f"train.device_microbatch_size: must be positive or 'auto', got "
                              f"{self.device_microbatch_size}")
