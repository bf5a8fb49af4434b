"""The composition root: the one place where a :class:`~segrecipes.config.RunConfig` becomes objects.

``build_trainer(config, run_dir)`` builds the datasets (and checks them), the model, the methods, the
loss, the optimizer, the schedule and the evaluation settings, and hands them to a
:class:`~segrecipes.engine.trainer.Trainer`. Everything below this module takes plain components, so
the same trainer and methods serve someone's own model and data without a config.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch
from torch import nn
from torch.utils.data import Subset

from segrecipes.config import ConfigError, Duration, OptimizerConfig, RunConfig, build_config, merge_dicts, \
    moved_keys, parse_override
from segrecipes.cache import write_bytes_atomic, write_json
from segrecipes.data.augmented import AugmentedDataset
from segrecipes.data.check import training_checks
from segrecipes.data.errors import DataError
from segrecipes.data.spec import SPLITS, RawDataset, build_raw_dataset, parse_data_spec, split_assignment, \
    train_transform
from segrecipes.data.normalize import IMAGENET_MEAN, IMAGENET_STD
from segrecipes.data.sampler import steps_per_epoch
from segrecipes.data.stats import cached_stats, median_frequency_weights
from segrecipes.disk import write_failure
from segrecipes.engine.checkpoint import CheckpointError, checkpoint_candidates, latest_checkpoint
from segrecipes.engine.clock import Clock
from segrecipes.engine.distributed import DistInfo, barrier, init_distributed
from segrecipes.engine.lr_find import range_test
from segrecipes.engine.remote import RemoteMirror
from segrecipes.engine.trackers import check_trackers
from segrecipes.engine.trainer import Trainer
from segrecipes.evaluation.metrics import SegMetrics
from segrecipes.methods import EMA, SAM, ChannelsLast, FreezeBackbone, Method, MixUp, SegmentationLoss
from segrecipes.methods.ema import smoothing_for
from segrecipes.models.factory import build_model
from segrecipes.models.input_stats import weights_normalization
from segrecipes.models.parts import backbone_of
from segrecipes.optim import SGDW, LRSchedule, parameter_groups
from segrecipes.optim.lr_find import LRCurve, RangeTest

Split = RawDataset | Subset  # a split, or what is left of it without its bad files
T = TypeVar("T")
SPLITS_RECORD = "data-splits.json"  # in the run folder: the images of each split of a one-split export
LR_FIND_RECORD = "lr_find.json"  # in the run folder of an `optimizer.lr: auto` run: the range test's curve
AUTO_LR_TEST = RangeTest()  # the range test of `optimizer.lr: auto` (`segrecipes lr-find` takes its own)
__all__ = ["build_network", "build_trainer", "found_lr", "holds_checkpoint", "lr_range_test", "newest_checkpoint",
           "resolved_statistics", "resume_point", "resumed_config", "run_clock", "timed_constants", "training_data",
           "validation_data"]


def build_trainer(
    config: RunConfig,
    run_dir: Path | str | None,
    resume: dict[str, Any] | Literal["auto"] | None = None,
    dist: DistInfo | None = None,
    extra_methods: Sequence[Method] = (),
    mirror: RemoteMirror | None = None,
    on_evaluation: Callable[[int, SegMetrics], None] | None = None,
) -> Trainer:
    """A trainer for ``config`` writing to ``run_dir`` (None: nothing written). ``resume``: a checkpoint
    to continue (:func:`resume_point` reads a run's), or ``"auto"``: continue ``run_dir``'s newest
    loadable checkpoint when it holds one, else start; the rule of ``segrecipes train --resume auto``
    (which continues with the folder's own config and its ``--set`` overrides, :func:`resume_point`),
    here with ``config``, which must describe the same run (a longer duration extends it, keeping its
    ``dur`` constants). ``extra_methods`` (your own) run beside the config's. Bad data is refused here,
    before the first step. With a ``mirror``, ``run_dir`` is its staging folder. ``on_evaluation(step,
    metrics)`` follows each evaluation (a search's pruner: :class:`Trainer`)."""
    if resume == "auto":
        if run_dir is None:
            raise ConfigError("resume='auto' needs a run folder (the one to continue when it holds a checkpoint)")
        point = resume_point(Path(run_dir), mirror=mirror, rank=int(os.environ.get("RANK", "0")))
        resume = None if point is None else point[1]
        if point is not None:
            config = extended(config, point[0])
    check_trackers(config.train.loggers)  # a logger whose package is missing, refused before any work
    config = weights_normalized(config)
    dist = dist or init_distributed(config.train.device, config.train.dist_timeout)
    config = found_lr(config, dist, run_dir, resume)
    torch.manual_seed(config.train.seed)  # the model's initial weights do not depend on the rank
    config, (train_raw, val_raw, class_names, ignore_index) = _checked_datasets(config, dist)
    if run_dir is not None and dist.is_main:
        _record_split_assignment(config, Path(run_dir))
    model = build_network(config, len(class_names))
    optimizer = build_optimizer(config.optimizer, model)
    train_data = training_data(config, train_raw)
    clock = run_clock(config, len(train_data))
    loss = SegmentationLoss.named(config.loss.name, ignore_index, config.loss.ce_weight, config.loss.dice_weight,
                                  _class_weights(config, dist, class_names, train_raw))
    data = config.data
    trainer = Trainer(
        model, loss, optimizer, train_data, config.train,
        val_data=val_raw,
        methods=[*build_methods(config, len(class_names), ignore_index, clock, model), *extra_methods],
        lr_schedule=_lr_schedule(config, clock), inference=config.eval,
        class_names=class_names, ignore_index=ignore_index, run_dir=run_dir, config=config.to_dict(), dist=dist,
        mirror=mirror, clock=clock, num_workers=data.num_workers, pin_memory=data.pin_memory,
        persistent_workers=data.persistent_workers, on_evaluation=on_evaluation,
    )
    if resume is not None:
        trainer.load_state_dict(resume)
    return trainer


def found_lr(config: RunConfig, dist: DistInfo, run_dir: Path | str | None = None,
             resume: dict[str, Any] | None = None) -> RunConfig:
    """``config`` with ``optimizer.lr: auto`` replaced by a rate: the resumed run's own, or the range
    test's suggestion (:func:`lr_range_test`; rank 0 decides), its curve written to ``lr_find.json`` in
    ``run_dir``. A resume never searches again."""
    if config.optimizer.lr != "auto":
        return config
    if resume is not None:
        lr = resume["config"]["optimizer"]["lr"]
    else:
        curve, lr = lr_range_test(config, dist, AUTO_LR_TEST)
        if run_dir is not None and dist.is_main:
            write_json(Path(run_dir) / LR_FIND_RECORD, curve.to_dict())
    return config.model_copy(update={"optimizer": config.optimizer.model_copy(update={"lr": lr})})


def lr_range_test(config: RunConfig, dist: DistInfo | None = None, test: RangeTest = RangeTest(),
                  progress: Callable[[int, float, float], None] | None = None) -> tuple[LRCurve, float]:
    """The learning-rate range test of ``config``'s run (its model, data, methods and step, nothing
    written): this rank's curve and rank 0's suggested rate (:mod:`segrecipes.optim.lr_find`)."""
    base = config.optimizer.model_copy(update={"lr": 1.0})  # the test sets every step's rate itself
    trainer = build_trainer(config.model_copy(update={"optimizer": base}), None, dist=dist)
    try:
        return range_test(trainer, test, progress)
    finally:
        trainer.close()


def holds_checkpoint(run_dir: Path | str, mirror: RemoteMirror | None = None) -> bool:
    """Whether ``run_dir`` (the remote folder with a ``mirror``) has checkpoint files; none is read."""
    return mirror.has_checkpoint() if mirror is not None else bool(checkpoint_candidates(Path(run_dir)))


def newest_checkpoint(run_dir: Path | str, mirror: RemoteMirror | None = None) -> dict[str, Any] | None:
    """The newest loadable checkpoint of ``run_dir`` (of the remote folder with a ``mirror``), corrupt
    ones skipped with a warning; None when the folder holds none (an error when none loads)."""
    if not holds_checkpoint(run_dir, mirror):
        return None
    return (mirror.latest_checkpoint() if mirror is not None else latest_checkpoint(Path(run_dir)))[1]


def extended(config: RunConfig, saved: RunConfig) -> RunConfig:
    """``config`` continuing a run saved with ``saved``: given another duration, its ``dur`` constants
    (EMA half-life, intervals) keep the batches they meant in the saved run."""
    if config.train.duration != saved.train.duration and config.train.dur_base is None:
        return config.model_copy(update={"train": config.train.model_copy(update={"dur_base": saved.train.duration})})
    return config


def resume_point(run_dir: Path, overrides: Sequence[str] = (), mirror: RemoteMirror | None = None, rank: int = 0
                 ) -> tuple[RunConfig, dict[str, Any]] | None:
    """What continuing ``run_dir`` starts from, None when it holds no checkpoint: its saved config with
    ``overrides`` (``section.key=value``) on top (a longer duration keeps the ``dur`` constants) and its
    newest loadable checkpoint. With a ``mirror`` (``run_dir`` its staging folder) the remote folder's
    checkpoint, and ``rank`` 0 pulls its logs, which the resumed run continues. ``--resume`` is this rule."""
    state = newest_checkpoint(run_dir, mirror)
    if state is None:
        return None
    data = state["config"]
    for override in overrides:
        data = merge_dicts(moved_keys(data), moved_keys(parse_override(override)))
    source = f"{mirror.url if mirror is not None else run_dir}/checkpoints"
    if mirror is not None and rank == 0:
        mirror.pull()  # metrics.jsonl, TensorBoard events and best.pt of the run
    return extended(build_config(data, source), build_config(state["config"], source)), state


def resumed_config(run_dir: Path, overrides: Sequence[str] = (), mirror: RemoteMirror | None = None, rank: int = 0
                   ) -> tuple[RunConfig, dict[str, Any]]:
    """:func:`resume_point` of a folder that must hold a checkpoint, for ``build_trainer(config, run_dir,
    resume=state)``."""
    point = resume_point(run_dir, overrides, mirror, rank)
    if point is None:
        where = mirror.url if mirror is not None else run_dir
        raise CheckpointError(f"{where}: no checkpoint found under {where}/checkpoints")
    return point


def build_network(config: RunConfig, num_classes: int, pretrained: bool = True) -> nn.Module:
    """The configured network; ``pretrained=False`` skips the backbone weights (the caller loads its own)."""
    section = config.model if pretrained else config.model.model_copy(update={"weights": None})
    return build_model(section, num_classes, in_channels=config.data.in_channels)


def training_data(config: RunConfig, raw: Split | None = None) -> AugmentedDataset:
    """The training split (``raw``, or the whole split of ``data.spec``) under the reference augmentation."""
    return AugmentedDataset(raw if raw is not None else build_raw_dataset(config.data, "train"),
                            train_transform(config.data), replace_unreadable=config.data.skip_bad)


def validation_data(config: RunConfig) -> RawDataset:
    """The validation split of ``data.spec`` (raw images and masks, as evaluation takes them)."""
    return build_raw_dataset(config.data, "val")


def run_clock(config: RunConfig, train_samples: int) -> Clock:
    """The run's clock before the first step: what its durations and intervals mean in batches."""
    batch = config.train.global_batch_size
    return Clock(config.train.duration, steps_per_epoch(train_samples, batch), batch, config.train.dur_base)


# every duration and interval of a run, in the order `segrecipes recipes show` lists them
TIMED_KEYS = (("train", "duration"), ("schedule", "warmup"), ("model", "freeze_backbone"),
              ("train", "eval_interval"), ("train", "checkpoint_interval"), ("ema", "half_life"),
              ("ema", "update_interval"), ("sam", "interval"))


def timed_constants(config: RunConfig, train_samples: int) -> dict[str, tuple[Duration | None, Duration | None]]:
    """``section.key`` -> (the value as configured, the same in this run's batches or seconds), for every
    duration and interval of the enabled sections, on a training split of ``train_samples`` images."""
    clock = run_clock(config, train_samples)
    constants = {}
    for name, key in TIMED_KEYS:
        section = getattr(config, name)
        if getattr(section, "enabled", True):
            value = getattr(section, key)
            constants[f"{name}.{key}"] = (value, None if value is None else clock.resolve(value))
    return constants


def batches(clock: Clock, key: str, duration: Duration) -> int:
    """A method constant in this run's batches (the config refuses times for them: a method counts steps)."""
    steps = clock.steps(duration)
    if steps is None:
        raise ConfigError(f"{key}: {duration} is wall-clock time here; give it in ba, ep, sp or dur")
    return steps


def build_methods(
    config: RunConfig, num_classes: int, ignore_index: int, clock: Clock, model: nn.Module | None = None
) -> list[Method]:
    """One method per enabled section, its intervals resolved to ``clock``'s batches; ``model`` is the
    network whose backbone ``model.freeze_backbone`` freezes."""
    ema, sam = config.ema, config.sam

    def build_ema() -> EMA:
        interval = batches(clock, "ema.update_interval", ema.update_interval)
        smoothing = ema.smoothing or smoothing_for(batches(clock, "ema.half_life", ema.half_life), interval)
        return EMA(smoothing=smoothing, update_interval=interval, warmup=ema.warmup)

    builders: dict[str, Callable[[], Method]] = {
        "ema": build_ema,
        "channels_last": ChannelsLast,
        "mixup": lambda: MixUp(num_classes, config.mixup.alpha, ignore_index),
        "sam": lambda: SAM(sam.rho, batches(clock, "sam.interval", sam.interval), sam.epsilon),
    }
    methods = [builders[name]() for name in config.enabled_methods()]
    if config.model.freeze_backbone is not None:
        methods.append(_freeze_backbone(config.model.freeze_backbone, model, clock))
    return methods


def _freeze_backbone(duration: Duration, model: nn.Module | None, clock: Clock) -> FreezeBackbone:
    """``model.freeze_backbone``: in steps, or as a share of a run on a wall-clock budget."""
    backbone = backbone_of(model) if model is not None else None
    if backbone is None:
        raise ConfigError("model.freeze_backbone: the model has no backbone or encoder to freeze")
    steps = clock.steps(duration)
    return FreezeBackbone(backbone, steps=steps) if steps is not None else FreezeBackbone(
        backbone, fraction=clock.fraction_of_run(duration))


def build_optimizer(section: OptimizerConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGDW (decoupled decay, the reference), SGD with coupled decay, or AdamW; all skip non-finite
    steps on the device (fused kernels). One group per learning rate and decay (backbone or head,
    norm/bias or not): ``optimizer.backbone_lr_mult`` and ``optimizer.norm_weight_decay``."""
    backbone = backbone_of(model)
    if backbone is None and section.backbone_lr_mult != 1:
        raise ConfigError(f"optimizer.backbone_lr_mult: {type(model).__name__} has no backbone or encoder to scale")
    decay_key = "decoupled_weight_decay" if section.name == "sgdw" else "weight_decay"
    groups = parameter_groups(model, section.lr, section.weight_decay, backbone, section.backbone_lr_mult,
                              section.norm_weight_decay, decay_key)
    if section.name == "sgdw":
        return SGDW(groups, section.lr, section.momentum, section.weight_decay, section.nesterov)
    if section.name == "sgd":
        return SGDW(groups, section.lr, section.momentum, nesterov=section.nesterov,
                    coupled_weight_decay=section.weight_decay)
    return torch.optim.AdamW(groups, lr=section.lr, betas=section.betas, weight_decay=section.weight_decay,
                             fused=True)


def _lr_schedule(config: RunConfig, clock: Clock) -> LRSchedule:
    section = config.schedule
    return LRSchedule(section.name, clock.fraction_of_run(section.warmup), section.power, section.final_lr_ratio)


def _checked_datasets(config: RunConfig, dist: DistInfo) -> tuple[RunConfig, tuple[Split, Split, list[str], int]]:
    """Both splits, their class names and ignore index, after the files were checked (headers, and
    every mask's values: cached). A problem ends the run here, or with ``data.skip_bad`` its pairs are
    left out and counted. Rank 0 checks first and fills the cache; the other ranks then read it.
    Returned with ``config``, its ``data.mean``/``data.std: auto`` resolved (:func:`resolved_statistics`)."""
    data = config.data
    splits: dict[str, Split] = {split: build_raw_dataset(data, split) for split in SPLITS}
    names, ignore_index = list(splits["train"].class_names), splits["train"].ignore_index
    bad: dict[str, set[int]] = {split: set() for split in SPLITS}
    if data.check and parse_data_spec(data.spec)[1] is not None:
        report = _main_first(dist, lambda: training_checks(data))
        if not data.skip_bad:
            report.raise_if_errors()
        bad = {split: set(report.bad_indices(split)) for split in SPLITS}
    if "auto" in (data.mean, data.std):  # the splits again, normalized with the training split's numbers
        config = resolved_statistics(config, dist, exclude=bad["train"])
        splits = {split: build_raw_dataset(config.data, split) for split in SPLITS}
    for split, raw in splits.items():
        if bad[split]:
            splits[split] = Subset(raw, [index for index in range(len(raw)) if index not in bad[split]])
            warnings.warn(f"data.skip_bad: the {split} split without {len(bad[split])} bad file(s) of {data.spec}",
                          stacklevel=3)
    return config, (splits["train"], splits["val"], names, ignore_index)


def _record_split_assignment(config: RunConfig, run_dir: Path) -> None:
    """Which images ``data.val_fraction`` held out, into the run folder beside its config; a failed write
    only warns (the assignment can be made again from the config)."""
    assignment = split_assignment(config.data)
    if assignment is None:
        return
    try:
        write_bytes_atomic(run_dir / SPLITS_RECORD, assignment.read_bytes())
    except OSError as error:
        warnings.warn(write_failure("the split assignment", run_dir / SPLITS_RECORD, error), stacklevel=3)


def weights_normalized(config: RunConfig) -> RunConfig:
    """``config`` with ``data.mean``/``data.std`` set to what the pretrained weights expect when these are
    not ImageNet's and the config left them unset (``tf_efficientnet_lite0``: 127.5, inputs in [-1, 1]);
    a warning when the config sets other numbers."""
    data, model = config.data, config.model
    expected = weights_normalization(model.backbone, model.weights) if data.in_channels == 3 else None
    if expected is None or expected == (IMAGENET_MEAN, IMAGENET_STD):
        return config
    mean, std = ([round(255 * value, 4) for value in values] for values in expected)
    if data.mean is None and data.std is None:
        return config.model_copy(update={"data": data.model_copy(update={"mean": mean, "std": std})})
    if (data.mean, data.std) != (mean, std):
        warnings.warn(f"model.weights {model.weights!r} of {model.backbone} were trained on 8-bit images normalized "
                      f"with mean {mean} and std {std}; data.mean/std are {data.mean}/{data.std}", stacklevel=2)
    return config


def _main_first(dist: DistInfo | None, compute: Callable[[], T]) -> T:
    """Rank 0 computes first and fills the cache; the other ranks then read it instead of all counting at once."""
    if dist is None:
        return compute()
    if not dist.is_main:
        barrier()
    try:
        return compute()
    finally:
        if dist.is_main:
            barrier()


def _class_weights(config: RunConfig, dist: DistInfo, class_names: list[str], train: Split) -> list[float] | None:
    """``loss.class_weights`` as given (one per class), or for ``auto`` median-frequency weights of the
    training split as it is trained on (without the pairs ``data.skip_bad`` left out)."""
    weights = config.loss.class_weights
    if isinstance(weights, list) and len(weights) != len(class_names):
        raise ConfigError(f"loss.class_weights has {len(weights)} values but {config.data.spec} has "
                          f"{len(class_names)} classes")
    if weights != "auto":
        return weights
    exclude = set(range(len(train.dataset))) - set(train.indices) if isinstance(train, Subset) else set()
    return median_frequency_weights(_main_first(dist, lambda: cached_stats(config.data, "train", exclude=exclude)))


def resolved_statistics(config: RunConfig, dist: DistInfo | None = None, exclude: Collection[int] = ()) -> RunConfig:
    """``config`` with ``data.mean``/``data.std: auto`` replaced by the training split's per-channel numbers
    (without the pairs at ``exclude``), so that the run, its checkpoint and later evaluation normalize with
    the same fixed values. Rank 0 counts first and fills the cache."""
    data = config.data
    if "auto" not in (data.mean, data.std):
        return config
    stats = _main_first(dist, lambda: cached_stats(data, "train", exclude=exclude))
    if data.std == "auto" and min(stats.channel_std) <= 0:
        raise DataError(f"data.std: auto: a channel of {data.spec}'s training images is constant "
                        f"(std {stats.channel_std}); give data.mean and data.std")
    resolved = {"mean": stats.channel_mean if data.mean == "auto" else data.mean,
                "std": stats.channel_std if data.std == "auto" else data.std}
    return config.model_copy(update={"data": data.model_copy(update=resolved)})
