"""The training loop, readable top to bottom: one step, then the loop around it.

A step: move the batch to the device (uint8 images are normalized there), let the methods transform
it, set the learning rate from the fraction of the run done, compute gradients over the per-device
microbatches, take the optimizer step (or let a method such as SAM take it), then call every
method's ``after_step``. Evaluation, checkpoints (checkpointer.py) and logging happen between steps; a
resumed CPU run continues bit for bit. Nothing in a step reads a value back from the device (see the
engine's package docstring for the synchronizations there are).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from segrecipes.data.errors import DataError
from segrecipes.data.healing import HealingLoader, LoaderFailed
from segrecipes.data.loader import build_train_loader
from segrecipes.data.normalize import on_device
from segrecipes.data.sampler import TrainSampler
from segrecipes.engine.checkpointer import Checkpointer
from segrecipes.engine.clock import Clock
from segrecipes.engine.distributed import DistInfo, agreed_max, init_distributed, named_collective_errors
from segrecipes.engine.interrupt import RunInterrupted, StopSignal
from segrecipes.engine.microbatch import accumulated_gradients, device_batches, probe_microbatch, retried_on_oom
from segrecipes.engine.placement import placed, wrapped_for_ranks
from segrecipes.engine.precision import amp_dtype_for, grad_scaler_for
from segrecipes.engine.progress import ProgressBar
from segrecipes.engine.record import RunRecord
from segrecipes.engine.remote import RemoteMirror
from segrecipes.engine.report import environment_info
from segrecipes.engine.settings import TrainSettings
from segrecipes.engine.skips import BufferGuard, SkipCounter
from segrecipes.errors import ConfigError, one_line
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

    ``train_data[i]`` is ``(image, target)``: uint8 images are ImageNet-normalized on the device, float
    ones used as they are. ``val_data`` (raw images and masks) is scored under ``inference`` at every
    evaluation. ``lr_schedule`` maps the fraction of the run done to a learning-rate multiplier. With
    ``run_dir`` the run writes its logs, checkpoints and summary there, with ``config`` (a plain dict) for
    ``segrecipes eval``; a ``mirror`` (a run folder on object storage) gets a copy at each checkpoint.
    ``clock`` (the run's durations in steps) is built from ``settings`` unless given; loading uses ``num_workers``.
    ``on_evaluation(step, metrics)`` is called after each evaluation of the run (a search reports it to
    its pruner); what it raises ends :meth:`fit`.
    """

    def __init__(
        self, model: nn.Module, loss_fn: Loss, optimizer: torch.optim.Optimizer, train_data: Dataset,
        settings: TrainSettings, *,
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
        clock: Clock | None = None,
        num_workers: int = 0, pin_memory: bool = True, persistent_workers: bool = True,
        on_evaluation: Callable[[int, SegMetrics], None] | None = None,
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
        self.mirror, self.num_workers, self.on_evaluation = mirror, num_workers, on_evaluation
        self.dist = dist or init_distributed(settings.device, settings.dist_timeout)
        self.device = self.dist.device
        self.methods = arrange(methods)
        torch.manual_seed(settings.seed + self.dist.rank)
        self.model = placed(model, self.methods, self.optimizer, settings.sync_bn, self.dist)
        batch = settings.global_batch_size
        self.batch_per_rank, self.microbatch = device_batches(batch, self.dist.world_size,
                                                              settings.device_microbatch_size)
        self.sampler = TrainSampler(len(train_data), self.batch_per_rank, settings.seed, self.dist.rank,
                                    self.dist.world_size)
        self.loader = HealingLoader(lambda: build_train_loader(
            train_data, self.sampler, self.batch_per_rank, num_workers, pin_memory and self.device.type == "cuda",
            persistent_workers), self.sampler, settings.max_loader_restarts)
        self.clock = clock or Clock(settings.duration, self.sampler.batches_per_epoch, batch, settings.dur_base)
        self.amp_dtype = amp_dtype_for(settings.precision, self.device)
        self.scaler = grad_scaler_for(self.amp_dtype, self.device)
        self.ddp = wrapped_for_ranks(self.model, self.dist, any(m.leaves_parameters_unused for m in self.methods))
        wrapped = self.ddp or self.model
        self.forward = torch.compile(wrapped) if settings.compile else wrapped
        self.buffers, self.skips = BufferGuard(self.model), SkipCounter(self.device)
        self.checkpointer = Checkpointer(self.run_dir, settings.keep_last, self.dist, mirror,
                                         settings.max_failed_checkpoints)  # first: it clears dead writers' files
        self.record = RunRecord(self.run_dir, config, enabled=self.dist.is_main, best_metric=settings.best_metric,
                                loggers=settings.loggers)
        self.samples = choose_samples(len(val_data), settings.log_images, settings.seed) if val_data is not None else []
        self._probed = False

    def context(self, during_step: bool = False) -> StepContext:
        """Where the run is, for the methods' hooks (``during_step``: the step about to be taken)."""
        clock = self.clock
        return StepContext(clock.step + int(during_step), clock.epoch, clock.fraction, self.model)

    # ----------------------------------------------------------------- one step
    def step(self, images: torch.Tensor, target: torch.Tensor) -> StepResult:
        """One optimizer step on this rank's share of a global batch; advances the clock."""
        context = self.context(during_step=True)
        images, target = on_device(images, target, self.device)
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
        """The first method that takes over the step (SAM), else the plain step; out of GPU memory in one
        process with ``device_microbatch_size: auto``, retried with half the microbatch (microbatch.py)."""

        def attempt(microbatch: int) -> StepResult:
            compute = accumulated_gradients(self.forward, self.loss_fn, images, target, microbatch, self.ddp,
                                            self.scaler, self.amp_dtype, self.optimizer)
            tools = StepTools(compute, self.optimizer, self.scaler)
            for method in self.methods:
                result = method.optimizer_step(context, tools)
                if result is not None:
                    return result
            loss = tools.compute_grads(True)
            return StepResult(loss, optimizer_step(self.optimizer, self.scaler))

        retry = self.settings.device_microbatch_size == "auto" and not self.dist.distributed
        result, self.microbatch = retried_on_oom(attempt, self.microbatch, retry, self.device, self.buffers,
                                                 self.optimizer, f"step {context.step}, rank {self.dist.rank}")
        return result

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
                if not self._probed and settings.device_microbatch_size == "auto" and self.device.type == "cuda":
                    self._probed, self.microbatch = True, probe_microbatch(
                        self.model, self.loss_fn, *on_device(*self.loader.dataset[(0, 0)], self.device),
                        self.microbatch, self.amp_dtype, self.buffers)  # what fits on this GPU (microbatch.py)
                was_stopped = self.record.stalled(settings.early_stop_patience)
                metrics = self._loop(stop, bar)
                if metrics is None and self.val_data is not None:  # resumed a finished run: score it, log nothing
                    metrics = self.evaluate()
                    if was_stopped:
                        bar.message(f"this run stopped early at step {clock.step}; raise train.early_stop_patience "
                                    "to train it further")
                stopped_early = not clock.finished and self.record.stalled(settings.early_stop_patience)
                summary = self.record.summary(clock, metrics, int(self.skips.total.item()), stopped_early,
                                              environment_info(self.device, self.dist.world_size),
                                              getattr(self.train_data, "replaced", 0))
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
            for images, target in self._batches():
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
                        bar.message(self.record.early_stop_message(clock.step, patience))
                if finished or interrupted or clock.due(settings.checkpoint_interval, last_checkpoint_s):
                    self.save_checkpoint(final=finished or interrupted)
                    last_checkpoint_s = clock.elapsed_s
                if interrupted:
                    raise RunInterrupted(f"stopped by signal at step {clock.step}; checkpoint saved. "
                                         f"Continue with: {self.checkpointer.resume_command()}")
                clock.other_done()  # evaluation, checkpoints and logging count towards wall time
                if finished:
                    break
        return metrics

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's batches from the clock's position; a broken file or dying workers stop it with a checkpoint."""
        self.sampler.set_epoch(self.clock.epoch)
        self.sampler.set_start_batch(self.clock.batch_in_epoch)
        try:
            yield from self.loader
        except (DataError, LoaderFailed) as error:
            if self.dist.distributed or self.run_dir is None or self.clock.step == 0:  # nothing to save, or other
                raise  # ranks wait in a collective
            self.save_checkpoint(final=True)
            raise type(error)(f"{one_line(error)}; the run stopped at step {self.clock.step} with a checkpoint: fix "
                              f"it, then continue with: {self.checkpointer.resume_command()}") from None

    def _agree(self, stop: StopSignal) -> bool:
        """Whether any rank got a signal; the clock takes the slowest rank's time, so all ranks decide alike."""
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
                        num_workers=self.num_workers)

    def _evaluate(self, bar: ProgressBar) -> SegMetrics:
        metrics = self.evaluate()
        self.record.log_evaluation(self.clock, metrics, lambda: self.checkpointer.best_state(self))
        if self.samples and self.dist.is_main and self.run_dir is not None:
            self.record.log_samples(self.clock, render_samples(
                self.eval_model(), self.val_data, self.samples, self.inference, self.class_names,
                ignore_index=self.ignore_index, device=self.device, amp_dtype=self.amp_dtype))
        worst = ", ".join(f"{name} {iou:.1f}" for name, iou in metrics.worst(3))
        bar.message(f"step {self.clock.step}: val mIoU {metrics.miou:.2f}  pixel acc {metrics.pixel_acc:.2f}"
                    + (f"  worst IoU: {worst}" if worst else ""))
        if self.on_evaluation is not None:
            self.on_evaluation(self.clock.step, metrics)
        return metrics

    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs (:class:`~segrecipes.engine.checkpointer.Checkpointer`)."""
        return self.checkpointer.state(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`, e.g. a checkpoint read by ``engine.checkpoint.load_checkpoint``."""
        self.checkpointer.restore(self, state)

    def close(self) -> None:
        """Stop the training DataLoader's persistent workers (a trainer dropped before its process ends:
        a search's trial, a range test's)."""
        self.loader.close()

    def save_checkpoint(self, final: bool = False) -> None:
        """Write a training checkpoint (rank 0, with a run folder); every rank calls it at the same step.
        A failed write (a full disk) is retried at the next one, unless ``final``: then the run stops."""
        self.checkpointer.save(self, final)
