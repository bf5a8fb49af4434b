"""The training loop, readable top to bottom.

One step: take a batch, let the methods transform it, compute gradients over the per-device
microbatches, take the optimizer step (or let a method such as SAM take it), set the learning rate
from the progress, then call every method's ``after_step``. Evaluation, checkpoints and logging
happen between steps. Everything a resume needs (weights, optimizer, scaler, methods, RNG, the
position inside the epoch) is saved, so a resumed CPU run continues bit for bit.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Subset

from segrecipes.config import ConfigError, Duration, RunConfig
from segrecipes.data.augmented import AugmentedDataset
from segrecipes.data.check import cheap_checks
from segrecipes.data.normalize import normalize
from segrecipes.data.sampler import TrainSampler
from segrecipes.data.loader import build_train_loader
from segrecipes.data.spec import DataBundle, build_datasets
from segrecipes.engine.checkpoint import (
    BEST,
    CheckpointError,
    atomic_save,
    rng_state,
    save_training_checkpoint,
    set_rng_state,
)
from segrecipes.engine.distributed import DistInfo, init_distributed
from segrecipes.engine.hooks import Method, StepContext
from segrecipes.engine.interrupt import RunInterrupted, StopSignal, TrainingDiverged
from segrecipes.engine.optim import build_optimizer
from segrecipes.engine.progress import TrainProgress
from segrecipes.engine.run_logger import RunLogger
from segrecipes.engine.schedule import lr_factor, set_lr
from segrecipes.evaluation.evaluate import evaluate
from segrecipes.evaluation.metrics import SegMetrics
from segrecipes.methods.factory import build_methods
from segrecipes.methods.loss import SegmentationLoss
from segrecipes.models.factory import build_model


def amp_dtype_for(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: bf16/fp16 on GPU when asked (``auto`` means bf16), always fp32 on CPU."""
    if device.type != "cuda" or precision == "fp32":
        return None
    return torch.float16 if precision == "fp16" else torch.bfloat16


def _all_finite(model: nn.Module) -> bool:
    tensors = [t for t in model.state_dict().values() if t.is_floating_point()]
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


class Trainer:
    """Builds everything a run needs from a :class:`RunConfig` and trains it with :meth:`fit`."""

    def __init__(
        self,
        config: RunConfig,
        run_dir: Path | str,
        resume_state: dict[str, Any] | None = None,
        dist_info: DistInfo | None = None,
    ) -> None:
        self.cfg = config
        self.run_dir = Path(run_dir)
        self.dist = dist_info or init_distributed(config.train.device)
        self.device = self.dist.device
        train = config.train
        torch.manual_seed(train.seed + self.dist.rank)
        if train.global_batch_size % self.dist.world_size:
            raise ConfigError(
                f"train.global_batch_size: {train.global_batch_size} is not divisible by the world size "
                f"{self.dist.world_size}"
            )

        self.data: DataBundle = build_datasets(config.data)
        if config.data.check and config.data.spec != "synthetic":
            self._check_data()
        self.batch_per_rank = train.global_batch_size // self.dist.world_size
        self.microbatch = self.batch_per_rank if train.device_microbatch_size == "auto" else train.device_microbatch_size
        self.microbatch = min(self.microbatch, self.batch_per_rank)
        if self.microbatch < 2:
            # BatchNorm (the image-pool branch sees a 1x1 map) cannot train on one image
            raise ConfigError(
                f"train: {self.batch_per_rank} image(s) per device and microbatch {self.microbatch}: "
                "BatchNorm needs at least 2 images per microbatch"
            )

        model = build_model(config.model, self.data.num_classes)
        self.methods: list[Method] = build_methods(config, self.data.num_classes, self.data.ignore_index)
        for method in self.methods:
            model = method.prepare_model(model)
        if train.sync_bn and self.dist.distributed:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif train.sync_bn:
            warnings.warn("train.sync_bn is ignored in a single process", stacklevel=2)
        self.model = model.to(self.device)
        self.optimizer = build_optimizer(config.optimizer, self.model)
        self._float_buffers = [buffer for buffer in self.model.buffers() if buffer.is_floating_point()]
        self.amp_dtype = amp_dtype_for(train.precision, self.device)
        fp16 = self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type) if fp16 else None
        self.loss_fn = SegmentationLoss(config.loss.ce_weight, config.loss.dice_weight, self.data.ignore_index)

        wrapped: nn.Module = self.model
        if self.dist.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            wrapped = DistributedDataParallel(self.model, device_ids=ids)
        self.ddp = wrapped if self.dist.distributed else None
        self.forward = torch.compile(wrapped) if train.compile else wrapped

        self.sampler = TrainSampler(
            len(self.data.train), self.batch_per_rank, seed=train.seed, rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        self.loader = build_train_loader(
            self.data.train, self.sampler, self.batch_per_rank, config.data.num_workers,
            pin_memory=config.data.pin_memory and self.device.type == "cuda",
            persistent_workers=config.data.persistent_workers,
        )
        self.steps_per_epoch = self.sampler.batches_per_epoch
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"data.spec: the training split has {len(self.data.train)} images, fewer than one global batch "
                f"of {train.global_batch_size}"
            )
        self.progress_state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "samples": 0, "elapsed_s": 0.0,
                               "train_s": 0.0}
        self.best_miou = -math.inf
        self.history: list[dict[str, Any]] = []
        if resume_state is not None:
            self._restore(resume_state)
        self.logger = RunLogger(self.run_dir, config, enabled=self.dist.is_main)

    def _check_data(self) -> None:
        """Refuse bad files up front with their names, or (``data.skip_bad``) train without them."""
        report = cheap_checks(self.cfg.data)
        if not self.cfg.data.skip_bad:
            report.raise_if_errors()
            return
        bad = set(report.bad_indices("train"))
        if bad:
            keep = [index for index in range(len(self.data.train_raw)) if index not in bad]
            self.data.train = AugmentedDataset(Subset(self.data.train_raw, keep), self.data.train.transform)
            warnings.warn(f"data.skip_bad: training without {len(bad)} bad file(s) of {self.cfg.data.spec}",
                          stacklevel=2)

    # ----------------------------------------------------------------- durations and schedule
    def _steps(self, duration: Duration) -> int | None:
        """A duration in optimizer steps, or None when it is wall-clock time."""
        if duration.unit == "ba":
            return int(duration.value)
        if duration.unit == "ep":
            return max(1, round(duration.value * self.steps_per_epoch))
        return None

    def _progress(self) -> float:
        duration = self.cfg.train.duration
        total = self._steps(duration)
        if total is None:
            return self.progress_state["elapsed_s"] / duration.value
        return self.progress_state["step"] / total

    def _warmup_progress(self) -> float:
        warmup = self.cfg.schedule.warmup
        if warmup is None:
            return 0.0
        duration = self.cfg.train.duration
        total, steps = self._steps(duration), self._steps(warmup)
        if total is not None and steps is not None:
            return min(1.0, steps / total)
        if total is None and steps is None:
            return min(1.0, warmup.value / duration.value)
        raise ConfigError("schedule.warmup: use the same kind of unit as train.duration (steps/epochs or time)")

    def _due(self, interval: Duration | None, last_time: float) -> bool:
        if interval is None:
            return False
        steps = self._steps(interval)
        if steps is not None:
            return self.progress_state["step"] % steps == 0
        return self.progress_state["elapsed_s"] - last_time >= interval.value

    def _finished(self) -> bool:
        return self._progress() >= 1.0

    # ----------------------------------------------------------------- one step
    def _compute_grads(self, images: torch.Tensor, target: torch.Tensor) -> Callable[[bool], torch.Tensor]:
        """A closure computing gradients of the mean loss over the batch's microbatches (see StepContext)."""

        def compute(sync: bool) -> torch.Tensor:
            self.optimizer.zero_grad(set_to_none=True)
            count = max(1, len(images) // self.microbatch)  # chunks of >= microbatch images: never a lone one
            chunks = list(zip(images.tensor_split(count), target.tensor_split(count)))
            total = torch.zeros((), device=self.device)
            for index, (chunk_images, chunk_target) in enumerate(chunks):
                last = index == len(chunks) - 1
                no_sync = self.ddp is not None and not (sync and last)
                with self.ddp.no_sync() if no_sync else contextlib.nullcontext():
                    with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                        logits = self.forward(chunk_images)
                    loss = self.loss_fn(logits, chunk_target) * (len(chunk_images) / len(images))
                    (self.scaler.scale(loss) if self.scaler else loss).backward()
                total += loss.detach()
            return total

        return compute

    def _plain_step(self, context: StepContext) -> tuple[torch.Tensor, bool]:
        loss = context.compute_grads(True)
        if self.scaler is None:
            if not torch.isfinite(loss):  # fp32/bf16 have no scaler to skip a bad step for us
                return loss, False
            self.optimizer.step()
            return loss, True
        scale = self.scaler.get_scale()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss, self.scaler.get_scale() >= scale

    def _step(self, context: StepContext) -> tuple[torch.Tensor, bool]:
        """The first method that takes over the step (SAM), else the plain step."""
        for method in self.methods:
            result = method.optimizer_step(context)
            if result is not None:
                return result
        return self._plain_step(context)

    def train_step(self, images: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, bool]:
        images = normalize(images.to(self.device, non_blocking=True))
        target = target.to(self.device, non_blocking=True)
        for method in self.methods:
            images, target = method.transform_batch(images, target)
        set_lr(self.optimizer, lr_factor(self.cfg.schedule, self._progress(), self._warmup_progress()))
        context = StepContext(
            step=self.progress_state["step"] + 1, model=self.model, optimizer=self.optimizer,
            scaler=self.scaler, compute_grads=self._compute_grads(images, target),
        )
        # a skipped (non-finite) step must not leave NaN in the BatchNorm statistics either
        saved_buffers = torch._foreach_mul(self._float_buffers, 1.0) if self._float_buffers else []
        while True:
            try:
                loss, stepped = self._step(context)
                if not stepped and saved_buffers:
                    torch._foreach_copy_(self._float_buffers, saved_buffers)
                return loss, stepped
            except torch.cuda.OutOfMemoryError:
                if self.cfg.train.device_microbatch_size != "auto" or self.microbatch < 4:
                    raise
                self.microbatch //= 2  # automatic microbatching: halve until the step fits
                self.optimizer.zero_grad(set_to_none=True)
                torch.cuda.empty_cache()
                warnings.warn(f"out of GPU memory: device microbatch lowered to {self.microbatch}", stacklevel=2)

    def step(self, images: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """One optimizer step as :meth:`fit` takes it: :meth:`train_step`, then every method's
        ``after_step``. The caller advances ``progress_state``."""
        loss, stepped = self.train_step(images, target)
        for method in self.methods:
            method.after_step(self.model, self.progress_state["step"] + 1)
        return loss, stepped

    # ----------------------------------------------------------------- the loop
    def eval_model(self) -> nn.Module:
        model = self.model
        for method in self.methods:
            model = method.eval_model(model)
        return model

    def evaluate(self) -> SegMetrics:
        cfg = self.cfg
        metrics = evaluate(
            self.eval_model(), self.data.val_raw, protocol="reference", eval_size=cfg.data.eval_size,
            batch_size=cfg.eval.batch_size, device=self.device, amp_dtype=self.amp_dtype,
            num_workers=cfg.data.num_workers,
        )
        self.model.train()
        return metrics

    def fit(self) -> dict[str, Any]:
        """Train until the duration is reached; returns the summary also written to summary.json.

        Raises :class:`RunInterrupted` after checkpointing when SIGTERM/SIGINT arrives.
        """
        with StopSignal() as stop:
            return self._fit(stop)

    def _fit(self, stop: StopSignal) -> dict[str, Any]:
        state = self.progress_state
        cfg = self.cfg.train
        total_steps = self._steps(cfg.duration)
        bar = TrainProgress(total_steps or cfg.duration.value, "steps" if total_steps else "s", cfg.progress,
                            enabled=self.dist.is_main)
        if cfg.eval_at_start and state["step"] == 0:
            self._record_eval(self.evaluate(), bar)
        self.model.train()
        last_eval_time = last_ckpt_time = state["elapsed_s"]
        metrics: SegMetrics | None = None
        bad_steps = 0
        clock = time.perf_counter()
        window_images, window_seconds = 0, 0.0
        while not self._finished():
            self.sampler.set_epoch(state["epoch"])
            self.sampler.set_start_batch(state["batch_in_epoch"])
            for images, target in self.loader:
                loss, stepped = self.step(images, target)
                bad_steps = 0 if stepped else bad_steps + 1
                if bad_steps >= cfg.max_bad_steps:
                    bar.close()
                    raise TrainingDiverged(
                        f"{bad_steps} consecutive steps with non-finite loss or gradients (last loss {float(loss)}); "
                        f"stopped without saving. Lower optimizer.lr or use precision fp32/bf16."
                    )
                now = time.perf_counter()
                state["step"] += 1
                state["batch_in_epoch"] += 1
                state["samples"] += cfg.global_batch_size
                state["elapsed_s"] += now - clock
                state["train_s"] += now - clock
                window_images += cfg.global_batch_size
                window_seconds += now - clock
                clock = now
                if state["step"] % cfg.log_interval == 0 or self._finished():
                    row = {"step": state["step"], "epoch": self._epochs(), "loss": float(loss),
                           "lr": self.optimizer.param_groups[0]["lr"],
                           "images_per_s": window_images / max(window_seconds, 1e-9), "elapsed_s": state["elapsed_s"]}
                    self.logger.log(row)
                    bar.update(state["step"] if total_steps else state["elapsed_s"],
                               f"loss {row['loss']:.4f} lr {row['lr']:.2e} {row['images_per_s']:.1f} img/s")
                    window_images, window_seconds = 0, 0.0
                epoch_done = state["batch_in_epoch"] == self.steps_per_epoch
                if epoch_done:
                    state["epoch"] += 1
                    state["batch_in_epoch"] = 0
                finished = self._finished()
                if finished or self._due(cfg.eval_interval, last_eval_time):
                    metrics = self.evaluate()
                    self._record_eval(metrics, bar)
                    last_eval_time = state["elapsed_s"]
                interrupted = stop.requested(self.device)
                if finished or interrupted or self._due(cfg.checkpoint_interval, last_ckpt_time):
                    self.save_checkpoint()
                    last_ckpt_time = state["elapsed_s"]
                if interrupted:
                    bar.close()
                    self.logger.close()
                    raise RunInterrupted(
                        f"stopped by signal at step {state['step']}; checkpoint saved. "
                        f"Continue with: segrecipes train --resume {self.run_dir}"
                    )
                now = time.perf_counter()
                state["elapsed_s"] += now - clock  # evaluation and checkpoints count towards wall time
                clock = now
                if finished or epoch_done:
                    break
        bar.close()
        if metrics is None:  # resumed a finished run: evaluate what is there
            metrics = self.evaluate()
        summary = self._summary(metrics)
        self.logger.summary(summary)
        self.logger.close()
        return summary

    def _epochs(self) -> float:
        return self.progress_state["epoch"] + self.progress_state["batch_in_epoch"] / self.steps_per_epoch

    # ----------------------------------------------------------------- evaluation, state, summary
    def _record_eval(self, metrics: SegMetrics, bar: TrainProgress) -> None:
        state = self.progress_state
        row = {"step": state["step"], "epoch": self._epochs(), "val_miou": metrics.miou, "val_pixel_acc": metrics.pixel_acc, "elapsed_s": state["elapsed_s"],
               "samples": state["samples"]}
        self.history.append(row)
        self.logger.log(row)
        bar.message(f"step {state['step']}: val mIoU {metrics.miou:.2f}  pixel acc {metrics.pixel_acc:.2f}")
        if metrics.miou > self.best_miou and self.dist.is_main and _all_finite(self.eval_model()):
            self.best_miou = metrics.miou
            atomic_save(
                {"config": self.cfg.to_dict(), "model": self.eval_model().state_dict(), "data": self._data_info(),
                 "progress": dict(state), "metrics": metrics.to_dict()},
                self.run_dir / "checkpoints" / BEST,
            )

    def _data_info(self) -> dict[str, Any]:
        return {"num_classes": self.data.num_classes, "class_names": list(self.data.class_names),
                "ignore_index": self.data.ignore_index}

    def state_dict(self) -> dict[str, Any]:
        eval_model = self.eval_model()
        return {
            "config": self.cfg.to_dict(),
            "model": self.model.state_dict(),
            "eval_model": eval_model.state_dict() if eval_model is not self.model else None,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "methods": {method.name: method.state_dict() for method in self.methods},
            "progress": dict(self.progress_state),
            "best_miou": self.best_miou,
            "history": self.history,
            "rng": rng_state(),
            "data": self._data_info(),
        }

    def save_checkpoint(self) -> None:
        """Write a training checkpoint (rank 0); refuses weights that are not finite."""
        if not self.dist.is_main:
            return
        if not _all_finite(self.model) or not _all_finite(self.eval_model()):
            raise TrainingDiverged(f"non-finite weights at step {self.progress_state['step']}; no checkpoint written")
        save_training_checkpoint(self.state_dict(), self.run_dir / "checkpoints", self.cfg.train.keep_last)

    def _restore(self, state: dict[str, Any]) -> None:
        saved = state["data"]["num_classes"]
        if saved != self.data.num_classes:
            raise CheckpointError(f"checkpoint has {saved} classes but {self.cfg.data.spec} has "
                                  f"{self.data.num_classes}: resume on the data the run was trained on")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        for method in self.methods:
            method.load_state_dict(state["methods"].get(method.name, {}))
        self.progress_state.update(state["progress"])
        self.best_miou = state.get("best_miou", -math.inf)
        self.history = list(state.get("history", []))
        set_rng_state(state["rng"])

    def _summary(self, metrics: SegMetrics) -> dict[str, Any]:
        state = self.progress_state
        return {
            "miou": metrics.miou,
            "pixel_acc": metrics.pixel_acc,
            "mean_acc": metrics.mean_acc,
            "per_class_iou": dict(zip(self.data.class_names, metrics.iou)),
            "best_miou": max(self.best_miou, metrics.miou),
            "epochs": self._epochs(),
            "steps": state["step"],
            "wall_time_s": state["elapsed_s"],
            "train_images_per_s": state["samples"] / max(state["train_s"], 1e-9),
            "history": self.history,
        }
