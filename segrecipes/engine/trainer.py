"""The training loop, readable top to bottom: one step, then the loop around it.

A step: move the batch to the device (uint8 images are normalized there), let the methods transform
it, set the learning rate from the fraction of the run done, compute gradients over the per-device
microbatches, take the optimizer step (or let a method such as SAM take it), then call every
method's ``after_step``. Evaluation, checkpoints and logging happen between steps. Everything a
resume needs is saved, so a resumed CPU run continues bit for bit. Nothing in a step reads a value
back from the device (see the engine's package docstring for the synchronizations there are).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from segrecipes.data.loader import build_train_loader
from segrecipes.data.normalize import normalize
from segrecipes.data.sampler import TrainSampler
from segrecipes.engine.checkpoint import CheckpointError, all_finite, rng_state, save_training_checkpoint, \
    set_rng_state, set_torch_rng_state, torch_rng_state
from segrecipes.engine.clock import Clock
from segrecipes.engine.distributed import DistInfo, agreed_max, gathered, init_distributed, named_collective_errors
from segrecipes.engine.interrupt import RunInterrupted, StopSignal, TrainingDiverged
from segrecipes.engine.microbatch import MIN_MICROBATCH, probe_microbatch
from segrecipes.engine.precision import amp_dtype_for, grad_scaler_for
from segrecipes.engine.progress import ProgressBar
from segrecipes.engine.record import RunRecord
from segrecipes.engine.remote import RemoteMirror
from segrecipes.engine.report import environment_info
from segrecipes.engine.settings import TrainSettings
from segrecipes.engine.skips import BufferGuard, SkipCounter
from segrecipes.errors import ConfigError
from segrecipes.evaluation.evaluate import evaluate
from segrecipes.evaluation.metrics import SegMetrics, metric_key_error
from segrecipes.evaluation.options import InferenceOptions
from segrecipes.evaluation.samples import choose_samples, render_samples
from segrecipes.methods.base import Method, StepContext, StepResult, StepTools, arrange
from segrecipes.optim.schedule import LRSchedule, set_lr
from segrecipes.optim.step import optimizer_step

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Trainer:
    """Trains ``model`` on ``train_data`` with ``loss_fn`` and ``optimizer`` as ``settings`` say.

    ``train_data[i]`` is ``(image, target)``: uint8 images are ImageNet-normalized on the device,
    floating-point ones are used as they are. ``val_data`` (raw images and masks at their original
    size) is scored under ``inference`` at every evaluation. ``lr_schedule`` maps the fraction of the
    run done to a learning-rate multiplier. With ``run_dir`` the run writes metrics, TensorBoard
    events, checkpoints and a summary there; ``config`` (a plain dict) is recorded with them so that
    ``segrecipes eval`` can rebuild the model. With a ``mirror`` (a run folder on object storage, ``run_dir``
    its local staging folder), rank 0 uploads each checkpoint and the run's files after it, and at the end.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Loss,
        optimizer: torch.optim.Optimizer,
        train_data: Dataset,
        settings: TrainSettings,
        *,
        val_data: Dataset | None = None,
        methods: Sequence[Method] = (),
        lr_schedule: Callable[[float], float] = LRSchedule(),
        inference: InferenceOptions = InferenceOptions(),
        class_names: Sequence[str] | None = None,
        ignore_index: int = 255,
        run_dir: Path | str | None = None,
        config: dict[str, Any] | None = None,
        dist: DistInfo | None = None,
        mirror: RemoteMirror | None = None,
    ) -> None:
        self.settings, self.loss_fn, self.optimizer = settings, loss_fn, optimizer
        self.train_data, self.val_data = train_data, val_data
        self.lr_schedule, self.inference, self.ignore_index = lr_schedule, inference, ignore_index
        self.class_names = list(class_names or getattr(val_data or train_data, "class_names", None) or [])
        if val_data is not None and not self.class_names:
            raise ConfigError("Trainer: give class_names (the datasets have no class_names attribute to take them "
                              "from)")
        metric_error = metric_key_error(settings.best_metric, self.class_names)
        if metric_error is not None:
            raise ConfigError(f"train.best_metric: {metric_error}")
        self.run_dir, self.config = (Path(run_dir) if run_dir is not None else None), config
        self.mirror = mirror
        self.dist = dist or init_distributed(settings.device, settings.dist_timeout)
        self.device = self.dist.device
        self.methods = arrange(methods)
        torch.manual_seed(settings.seed + self.dist.rank)

        batch = settings.global_batch_size
        if batch % self.dist.world_size:
            raise ConfigError(f"train.global_batch_size: {batch} is not divisible by the world size "
                              f"{self.dist.world_size}")
        self.batch_per_rank = batch // self.dist.world_size
        wanted = settings.device_microbatch_size
        self.microbatch = min(self.batch_per_rank if wanted == "auto" else int(wanted), self.batch_per_rank)
        if self.microbatch < MIN_MICROBATCH:
            raise ConfigError(f"train: {self.batch_per_rank} image(s) per device and microbatch {self.microbatch}: "
                              f"BatchNorm needs at least {MIN_MICROBATCH} images per microbatch")
        self.sampler = TrainSampler(len(train_data), self.batch_per_rank, settings.seed, self.dist.rank,
                                    self.dist.world_size)
        self.loader = build_train_loader(train_data, self.sampler, self.batch_per_rank, settings.num_workers,
                                         settings.pin_memory and self.device.type == "cuda",
                                         settings.persistent_workers)
        self.clock = Clock(settings.duration, self.sampler.batches_per_epoch, batch, settings.dur_base)

        self.model = self._prepare(model)
        self.amp_dtype = amp_dtype_for(settings.precision, self.device)
        self.scaler = grad_scaler_for(self.amp_dtype, self.device)
        unused = any(method.leaves_parameters_unused for method in self.methods)
        self.ddp = DistributedDataParallel(self.model, device_ids=None if self.device.index is None else
                                           [self.device.index], find_unused_parameters=unused
                                           ) if self.dist.distributed else None
        wrapped = self.ddp or self.model
        self.forward = torch.compile(wrapped) if settings.compile else wrapped
        self.buffers, self.skips = BufferGuard(self.model), SkipCounter(self.device)
        self.record = RunRecord(self.run_dir, config, enabled=self.dist.is_main, best_metric=settings.best_metric,
                                loggers=settings.loggers)
        self.samples = choose_samples(len(val_data), settings.log_images, settings.seed) if val_data is not None else []
        self._probed = False

    def _prepare(self, model: nn.Module) -> nn.Module:
        """The methods' ``prepare_model``, SyncBN, the device; the optimizer must still hold its parameters."""
        for method in self.methods:
            model = method.prepare_model(StepContext(0, 0, 0.0, model), model)
        if self.settings.sync_bn and self.dist.distributed:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif self.settings.sync_bn:
            warnings.warn("train.sync_bn is ignored in a single process", stacklevel=3)
        model = model.to(self.device)
        own = {id(param) for param in model.parameters()}
        if any(id(param) not in own for group in self.optimizer.param_groups for param in group["params"]):
            raise ConfigError("the optimizer holds parameters that are not the model's: build it from this "
                              "model's parameters (a method's prepare_model must keep them)")
        return model

    def context(self, during_step: bool = False) -> StepContext:
        """Where the run is, for the methods' hooks (``during_step``: the step about to be taken)."""
        clock = self.clock
        return StepContext(clock.step + int(during_step), clock.epoch, clock.fraction, self.model)

    # ----------------------------------------------------------------- one step
    def step(self, images: torch.Tensor, target: torch.Tensor) -> StepResult:
        """One optimizer step on this rank's share of a global batch; advances the clock."""
        context = self.context(during_step=True)
        images = normalize(images.to(self.device, non_blocking=True))
        target = _target_on(self.device, target)
        for method in self.methods:
            images, target = method.transform_batch(context, images, target)
        set_lr(self.optimizer, self.lr_schedule(context.fraction))
        self.buffers.save()
        result = self._take_step(context, images, target)
        self.buffers.restore_if(result.skipped)  # a skipped step leaves no trace in the BatchNorm statistics
        self.skips.record(result.skipped)
        for method in self.methods:
            method.after_step(context)
        self.clock.step_done()
        return result

    def _take_step(self, context: StepContext, images: torch.Tensor, target: torch.Tensor) -> StepResult:
        """The first method that takes over the step (SAM), else the plain step. Out of GPU memory with
        ``device_microbatch_size: auto`` in one process, the step is retried from where it started with
        half the microbatch (under DDP the microbatch is found before the first step instead)."""
        retry = self.settings.device_microbatch_size == "auto" and not self.dist.distributed
        while True:
            rng = torch_rng_state(self.device) if retry else None
            tools = StepTools(self._gradients(images, target), self.optimizer, self.scaler)
            try:
                for method in self.methods:
                    result = method.optimizer_step(context, tools)
                    if result is not None:
                        return result
                loss = tools.compute_grads(True)
                return StepResult(loss, optimizer_step(self.optimizer, self.scaler))
            except torch.cuda.OutOfMemoryError as error:
                if rng is None or self.microbatch // 2 < MIN_MICROBATCH:
                    error.add_note(f"step {context.step}, rank {self.dist.rank}, device microbatch {self.microbatch}: "
                                   "set train.device_microbatch_size lower")
                    raise
            # Out of memory, outside the handler: the error's traceback no longer holds the failed
            # attempt's activations, so emptying the cache returns their memory.
            self.microbatch //= 2
            self.buffers.restore()
            self.optimizer.zero_grad(set_to_none=True)
            set_torch_rng_state(rng, self.device)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            warnings.warn(f"out of GPU memory: device microbatch lowered to {self.microbatch}", stacklevel=2)

    def _gradients(self, images: torch.Tensor, target: torch.Tensor) -> Callable[[bool], torch.Tensor]:
        """``compute_grads(sync)`` of :class:`~segrecipes.methods.base.StepTools` for this batch."""

        def compute(sync: bool) -> torch.Tensor:
            self.optimizer.zero_grad(set_to_none=True)
            count = max(1, len(images) // self.microbatch)  # chunks of >= microbatch images: never a lone one
            chunks = list(zip(images.tensor_split(count), target.tensor_split(count)))
            total = torch.zeros((), device=self.device)
            for index, (chunk_images, chunk_target) in enumerate(chunks):
                no_sync = self.ddp is not None and not (sync and index == len(chunks) - 1)
                with self.ddp.no_sync() if no_sync else contextlib.nullcontext():
                    with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                        logits = self.forward(chunk_images)
                    loss = self.loss_fn(logits, chunk_target) * (len(chunk_images) / len(images))
                    (self.scaler.scale(loss) if self.scaler else loss).backward()
                total += loss.detach()
            return total

        return compute

    # ----------------------------------------------------------------- the loop
    def fit(self) -> dict[str, Any]:
        """Train until the duration is reached; returns the summary also written to summary.json.

        Raises :class:`RunInterrupted` after checkpointing when SIGTERM/SIGINT arrives.
        """
        clock, settings = self.clock, self.settings
        bar = ProgressBar(clock.total_steps or clock.duration.value, "steps" if clock.total_steps else "s",
                          settings.progress, enabled=self.dist.is_main)
        with StopSignal() as stop:
            try:
                if settings.eval_at_start and clock.step == 0 and self.val_data is not None:
                    self._evaluate(bar)
                self._fit_microbatch()
                was_stopped = self.record.stalled(settings.early_stop_patience)
                metrics = self._loop(stop, bar)
                if metrics is None and self.val_data is not None:  # resumed a finished run: score it, log nothing
                    metrics = self.evaluate()
                    if was_stopped:
                        bar.message(f"this run stopped early at step {clock.step}; raise train.early_stop_patience "
                                    "to train it further")
                stopped_early = not clock.finished and self.record.stalled(settings.early_stop_patience)
                summary = self.record.summary(clock, metrics, int(self.skips.total.item()), stopped_early,
                                              environment_info(self.device, self.dist.world_size))
            except BaseException:
                self.record.close(failed=True)
                raise
            finally:
                bar.close()
                self.record.close()
        if self.mirror is not None and self.dist.is_main:
            self.mirror.finish()  # the summary, the report and the closed TensorBoard files
        return summary

    def _loop(self, stop: StopSignal, bar: ProgressBar) -> SegMetrics | None:
        clock, settings = self.clock, self.settings
        last_eval_s = last_checkpoint_s = clock.elapsed_s
        last_log = (clock.samples, clock.train_s)
        metrics = None
        clock.restart_timer()
        patience = settings.early_stop_patience
        finished = clock.finished or self.record.stalled(patience)  # then decided after each step, by all ranks
        while not finished:
            self.sampler.set_epoch(clock.epoch)
            self.sampler.set_start_batch(clock.batch_in_epoch)
            for images, target in self.loader:
                with named_collective_errors(self.dist.rank, clock.step + 1, settings.dist_timeout):
                    result = self.step(images, target)
                with named_collective_errors(self.dist.rank, clock.step, settings.dist_timeout):
                    interrupted = self._agree(stop)
                finished = clock.finished
                if clock.step % settings.log_interval == 0 or finished:
                    self._log(result, last_log, bar)
                    last_log = (clock.samples, clock.train_s)
                if self.val_data is not None and (finished or clock.due(settings.eval_interval, last_eval_s)):
                    metrics = self._evaluate(bar)
                    last_eval_s = clock.elapsed_s
                    if not finished and self.record.stalled(patience):
                        finished = True
                        best = (f"than {self.record.best:.2f}" if math.isfinite(self.record.best) else
                                "(it was never defined: is the class absent from the validation data?)")
                        bar.message(f"early stop at step {clock.step}: {patience} evaluations without a better "
                                    f"{settings.best_metric} {best}")
                if finished or interrupted or clock.due(settings.checkpoint_interval, last_checkpoint_s):
                    self.save_checkpoint()
                    last_checkpoint_s = clock.elapsed_s
                if interrupted:
                    where = self.mirror.url if self.mirror is not None else self.run_dir
                    raise RunInterrupted(f"stopped by signal at step {clock.step}; checkpoint saved. "
                                         f"Continue with: segrecipes train --resume {where}")
                clock.other_done()  # evaluation, checkpoints and logging count towards wall time
                if finished:
                    break
        return metrics

    def _agree(self, stop: StopSignal) -> bool:
        """Whether any rank got a signal; the clock takes the slowest rank's wall time. Every rank then
        decides alike whether to evaluate, checkpoint or stop, also on wall-clock durations and intervals."""
        signal, self.clock.elapsed_s = agreed_max([float(stop.received is not None), self.clock.elapsed_s])
        return bool(signal)

    def _log(self, result: StepResult, last_log: tuple[int, float], bar: ProgressBar) -> None:
        clock = self.clock
        skipped = self.skips.check(self.settings.max_bad_steps, result.loss)
        samples, seconds = clock.samples - last_log[0], clock.train_s - last_log[1]
        row = {"loss": float(result.loss), "lr": self.optimizer.param_groups[0]["lr"],
               "images_per_s": samples / max(seconds, 1e-9), "skipped_steps": skipped}
        self.record.log_step(clock, row)
        bar.update(clock.step if clock.total_steps else clock.elapsed_s,
                   f"loss {row['loss']:.4f} lr {row['lr']:.2e} {row['images_per_s']:.1f} img/s", clock.remaining_s)

    def _fit_microbatch(self) -> None:
        """With ``device_microbatch_size: auto`` on a GPU, find once what fits (see microbatch.py)."""
        if not self._probed and self.settings.device_microbatch_size == "auto" and self.device.type == "cuda":
            self._probed = True
            image, target = self.loader.dataset[(0, 0)]
            sample = normalize(image.to(self.device)), _target_on(self.device, target)
            self.microbatch = probe_microbatch(self.model, self.loss_fn, *sample, self.microbatch, self.amp_dtype,
                                               self.buffers)

    # ----------------------------------------------------------------- evaluation and state
    def eval_model(self) -> nn.Module:
        """The model to evaluate and save: the training model, or a method's (EMA's averaged copy)."""
        context, model = self.context(), self.model
        for method in self.methods:
            model = method.eval_model(context, model)
        return model

    def evaluate(self, data: Dataset | None = None) -> SegMetrics:
        """The eval model's metrics on ``data`` (a raw dataset), by default the validation data."""
        data = data if data is not None else self.val_data
        if data is None:
            raise ConfigError("evaluate: this trainer has no validation data")
        return evaluate(self.eval_model(), data, self.inference, class_names=self.class_names or None,
                        ignore_index=self.ignore_index, device=self.device, amp_dtype=self.amp_dtype,
                        num_workers=self.settings.num_workers)

    def _evaluate(self, bar: ProgressBar) -> SegMetrics:
        metrics = self.evaluate()
        self.record.log_evaluation(self.clock, metrics, self._best_state)
        if self.samples and self.dist.is_main and self.run_dir is not None:
            self.record.log_samples(self.clock, render_samples(
                self.eval_model(), self.val_data, self.samples, self.inference, self.class_names,
                ignore_index=self.ignore_index, device=self.device, amp_dtype=self.amp_dtype))
        worst = ", ".join(f"{name} {iou:.1f}" for name, iou in metrics.worst(3))
        bar.message(f"step {self.clock.step}: val mIoU {metrics.miou:.2f}  pixel acc {metrics.pixel_acc:.2f}"
                    + (f"  worst IoU: {worst}" if worst else ""))
        return metrics

    def _best_state(self) -> dict[str, Any] | None:
        model = self.eval_model()
        return {"config": self.config, "model": model.state_dict(), "data": self._data_info(),
                "clock": self.clock.state_dict()} if all_finite(model) else None

    def _data_info(self) -> dict[str, Any]:
        names = self.class_names
        return {"num_classes": len(names) or None, "class_names": names, "ignore_index": self.ignore_index}

    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs, as tensors and plain containers."""
        eval_model = self.eval_model()
        return {
            "config": self.config,
            "model": self.model.state_dict(),
            "eval_model": eval_model.state_dict() if eval_model is not self.model else None,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "methods": {method.name: method.state_dict() for method in self.methods},
            "clock": self.clock.state_dict(),
            **self.record.state_dict(),
            "rng": rng_state(),
            "data": self._data_info(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`, e.g. a checkpoint read by ``engine.checkpoint.load_checkpoint``."""
        saved = state["data"]["num_classes"]
        if saved and self.class_names and saved != len(self.class_names):
            raise CheckpointError(f"checkpoint has {saved} classes but the data has {len(self.class_names)}: "
                                  "resume on the data the run was trained on")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        for method in self.methods:
            method.load_state_dict(state["methods"].get(method.name, {}))
        self.clock.load_state_dict(state["clock"])
        self.record.load_state_dict(state)
        ranks = state.get("rank_rng")  # this rank's own generators, when the run had as many ranks
        set_rng_state(ranks[self.dist.rank] if ranks and len(ranks) == self.dist.world_size else state["rng"])

    def save_checkpoint(self) -> None:
        """Write a training checkpoint (rank 0, with a run folder); refuses weights that are not finite. Every
        rank calls it at the same step: each rank's random generators are saved, so that dropout and MixUp
        draw after a resume what they would have drawn."""
        ranks = gathered(rng_state()) if self.dist.distributed else None
        if not self.dist.is_main or self.run_dir is None:
            return
        if not all_finite(self.model) or not all_finite(self.eval_model()):
            raise TrainingDiverged(f"non-finite weights at step {self.clock.step}; no checkpoint written")
        state = {**self.state_dict(), **({"rank_rng": ranks} if ranks else {})}
        path = save_training_checkpoint(state, self.run_dir / "checkpoints", self.settings.keep_last)
        self.record.flush()  # the logs as of this checkpoint, for a copy of the folder (remote, or a user's)
        if self.mirror is not None:
            self.mirror.upload_checkpoint(path, self.settings.keep_last)


def _target_on(device: torch.device, target: torch.Tensor) -> torch.Tensor:
    """Class indices travel as uint8 (an eighth of int64's bytes) and are widened on the device; a dense
    float target (a user's own) is moved as it is."""
    target = target.to(device, non_blocking=True)
    return target if target.is_floating_point() else target.long()
