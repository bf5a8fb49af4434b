"""How long and how a run trains: everything the trainer needs that is not a component (the ``train``
section of a run's config is this class)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from segrecipes.duration import Duration
from segrecipes.errors import ConfigError
from segrecipes.fields import DurationField, IntervalField, PythonSection


class TrainSettings(PythonSection):
    """Durations and intervals are :class:`~segrecipes.duration.Duration` or text (``"25ep"``,
    ``"1000ba"``, ``"39min"``); ``None`` switches an interval off.

    ``global_batch_size`` is the images per optimizer step over all processes; each device runs it in
    microbatches of at most ``device_microbatch_size`` (``auto``: the whole per-device batch, halved
    when it does not fit in GPU memory). ``precision`` ``auto`` is bf16 on a GPU; a CPU always runs fp32.
    Non-finite steps are skipped; ``max_bad_steps`` in a row end the run (checked on logging steps).
    A checkpoint that cannot be written (a full disk) is a warning and training goes on, retrying at the
    next checkpoint; ``max_failed_checkpoints`` failures in a row, or a failed final one, stop the run
    (exit 1, the last good checkpoint untouched). A DataLoader worker that dies is replaced at the same
    sample (bit-identical run), up to ``max_loader_restarts`` times in an epoch.
    ``best_metric`` (``miou``, ``mdice``, ``iou/<class>``, ...) decides ``best.pt``; with
    ``early_stop_patience`` the run ends after that many evaluations without a new best. ``log_images``
    validation images (chosen once from the seed) are rendered at each evaluation into the run folder.
    ``loggers`` (``tensorboard``, ``wandb``, ``mlflow``) receive what ``metrics.jsonl`` holds, on rank 0.
    Under torchrun a collective that waits ``dist_timeout`` seconds for another rank fails with a message
    naming the rank and the step, instead of the job hanging.
    """

    section: ClassVar[str] = "train"
    error_type: ClassVar[type[Exception]] = ConfigError

    duration: DurationField = Duration(128, "ep")
    dur_base: IntervalField = None  # what `dur` values are fractions of (None: duration); --resume sets it on extension
    global_batch_size: int = Field(128, gt=0)
    device_microbatch_size: int | Literal["auto"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: bool = False
    sync_bn: bool = False
    seed: int = 42
    eval_interval: IntervalField = Duration(1, "ep")
    log_interval: int = Field(10, gt=0)
    checkpoint_interval: IntervalField = Duration(1, "ep")
    keep_last: int = Field(2, ge=1)
    eval_at_start: bool = False
    max_bad_steps: int = Field(20, ge=1)  # consecutive non-finite steps before the run stops
    max_failed_checkpoints: int = Field(3, ge=0)  # checkpoint writes that may fail in a row (full disk); 0: stop at once
    max_loader_restarts: int = Field(3, ge=0)  # DataLoaders rebuilt in one epoch after a worker died; 0: stop at once
    loggers: list[Literal["tensorboard", "wandb", "mlflow"]] = ["tensorboard"]  # besides metrics.jsonl
    log_images: int = Field(8, ge=0)  # validation images rendered at each evaluation (samples/step-N/, TensorBoard)
    best_metric: str = "miou"  # what decides best.pt: miou, mdice, macc, pixel_acc, ... or iou/<class>
    early_stop_patience: int | None = Field(None, ge=1)  # evaluations without a new best before the run ends
    progress: Literal["auto", "rich", "plain", "none"] = "auto"
    dist_timeout: float = Field(1800, gt=0)  # seconds a collective waits for the other ranks before failing

    @field_validator("duration", "dur_base")
    @classmethod
    def _check_duration(cls, value: Duration | None) -> Duration | None:
        if value is not None and value.unit == "dur":
            raise ValueError(f"{value} is a fraction of the run itself: give the run in ba, ep, sp or time")
        return value

    @field_validator("device_microbatch_size")
    @classmethod
    def _check_microbatch(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value <= 0:
            raise ValueError("device_microbatch_size must be positive or 'auto'")
        return value
