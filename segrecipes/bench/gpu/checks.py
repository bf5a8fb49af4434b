"""Correctness of the engine where only a GPU exercises it: fp16's grad scaler, bf16, channels_last with
EMA, torch.compile, CUDA's out-of-memory error, DDP over NCCL and CUDA's sync debug mode, each checked
by a few real training steps of a Trainer built by ``run.build_trainer``.

Every check records pass/fail with what it measured; one that raises is recorded as failed with the
error's first line, and the next check runs. On a CPU (``--smoke``) the same code runs at tiny sizes,
and only what a CPU cannot do differs: the engine trains fp32 there (autocast and the grad scaler are
for GPUs, see engine/precision.py), so the fp16 and bf16 checks take the fp32 skip path;
torch.compile is compared on a 4-layer net (DeepLabv3+ takes over a minute to compile on a CPU); the
out-of-memory error is simulated, as tests/engine does; DDP runs over gloo; and counting host-device
synchronizations is not applicable (the steps still run).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from segrecipes.bench.driver import bench_trainer, synthetic_batch
from segrecipes.bench.gpu.workload import Workload, error_line, release
from segrecipes.config import RunConfig
from segrecipes.data.normalize import normalize
from segrecipes.data.spec import build_raw_dataset
from segrecipes.engine.checkpoint import all_finite
from segrecipes.engine.distributed import DistInfo, pick_device
from segrecipes.engine.trainer import Trainer
from segrecipes.methods import SegmentationLoss
from segrecipes.methods.base import StepResult
from segrecipes.run import build_optimizer, build_trainer, training_data

Batch = tuple[torch.Tensor, torch.Tensor]
SYNC_WARNING = "called a synchronizing CUDA operation"
# engine/__init__.py: a step that does not log reads nothing back from the device (with SGDW)
DOCUMENTED_SYNCS_PER_STEP = 0


@dataclass(frozen=True)
class CheckSizes:
    """``workload`` trains in every check but the out-of-memory one, which trains ``oom`` (on a GPU, a
    batch too large for its memory); ``steps`` per check; ``compile_rtol``: how close compiled losses must be."""

    workload: Workload
    oom: Workload
    steps: int
    compile_rtol: float


@dataclass(frozen=True)
class Finding:
    """What a check found; ``passed`` None: not applicable on this device, ``reason`` says why."""

    passed: bool | None
    details: dict[str, Any]
    reason: str | None = None


@dataclass
class CheckResult:
    name: str
    passed: bool | None  # None: not applicable (see reason); False also when the check raised (see error)
    details: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def status(self) -> str:
        if self.error is not None:
            return "error"
        return {True: "passed", False: "FAILED", None: "not applicable"}[self.passed]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}


def _trainer(workload: Workload, recipe: str | None = None, overrides: Sequence[str] = (),
             methods: Sequence[str] = ()) -> Trainer:
    return bench_trainer(workload.config(recipe, overrides, methods))


def _batches(trainer: Trainer, image_size: int, count: int) -> list[Batch]:
    generator = torch.Generator().manual_seed(0)
    return [synthetic_batch(trainer, image_size, generator) for _ in range(count)]


def _steps(trainer: Trainer, batches: list[Batch], steps: int) -> list[StepResult]:
    """``steps`` steps cycling through ``batches``; nothing is read back from the device."""
    return [trainer.step(*batches[index % len(batches)]) for index in range(steps)]


def _read(results: list[StepResult]) -> dict[str, Any]:
    losses = [float(result.loss) for result in results]
    return {"losses": losses, "finite": all(map(math.isfinite, losses)),
            "skipped_steps": sum(bool(result.skipped) for result in results)}


def _parameters(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {name: param.detach().clone() for name, param in trainer.model.named_parameters()}


def _state(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Copies of the model's parameters and buffers (BatchNorm statistics too) and the optimizer's tensors."""
    state = {f"model.{key}": value.detach().clone() for key, value in trainer.model.state_dict().items()}
    for index, values in enumerate(trainer.optimizer.state.values()):
        state.update({f"optimizer.{index}.{key}": value.clone() for key, value in values.items()
                      if isinstance(value, torch.Tensor)})
    return state


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> list[str]:
    return [key for key, value in before.items() if not torch.equal(value, after[key])]


def _precision(trainer: Trainer) -> dict[str, Any]:
    dtype = str(trainer.amp_dtype or torch.float32).removeprefix("torch.")
    return {"device": str(trainer.device), "autocast": dtype, "grad_scaler": trainer.scaler is not None}


def _trains(sizes: CheckSizes, overrides: Sequence[str], methods: Sequence[str] = ()) -> Finding:
    """A few steps: every loss finite, not every step skipped, the weights moved."""
    trainer = _trainer(sizes.workload, overrides=overrides, methods=methods)
    before = _parameters(trainer)
    read = _read(_steps(trainer, _batches(trainer, sizes.workload.image_size, 2), sizes.steps))
    moved = len(_changed(before, _parameters(trainer)))
    details = {**_precision(trainer), **read, "parameters_moved": f"{moved}/{len(before)}"}
    if trainer.scaler is not None:
        details["loss_scale"] = trainer.scaler.get_scale()
    return Finding(read["finite"] and read["skipped_steps"] < sizes.steps and moved > 0, details)


def _skips_non_finite(sizes: CheckSizes, overrides: Sequence[str], methods: Sequence[str] = ()) -> Finding:
    """A good step, then one on a batch holding an inf: skipped, the weights, BatchNorm statistics and
    optimizer state exactly as before it, and under a grad scaler the scale backed off."""
    trainer = _trainer(sizes.workload, overrides=overrides, methods=methods)
    images, target = _batches(trainer, sizes.workload.image_size, 1)[0]
    trainer.step(images, target)  # momentum buffers exist from here on
    before = _state(trainer)
    scale = trainer.scaler.get_scale() if trainer.scaler is not None else None
    poisoned = normalize(images)  # a float batch is taken as normalized
    poisoned[0, 0, 0, 0] = math.inf
    result = trainer.step(poisoned, target)
    changed = _changed(before, _state(trainer))
    details = {**_precision(trainer), "skipped": bool(result.skipped), "loss": float(result.loss),
               "tensors_compared": len(before), "tensors_changed": changed[:5]}
    backed_off = True
    if trainer.scaler is not None:
        details["loss_scale"] = [scale, trainer.scaler.get_scale()]
        backed_off = trainer.scaler.get_scale() < scale
    return Finding(bool(result.skipped) and not changed and backed_off, details)


def _channels_last(model: nn.Module) -> bool:
    return all(param.is_contiguous(memory_format=torch.channels_last) for param in model.parameters()
               if param.dim() == 4)


def _channels_last_ema(sizes: CheckSizes) -> Finding:
    """channels_last with EMA updated every step: the averaged copy differs from the model, is finite,
    and both keep the channels_last layout."""
    trainer = _trainer(sizes.workload, overrides=("ema.update_interval=1",), methods=("channels_last", "ema"))
    read = _read(_steps(trainer, _batches(trainer, sizes.workload.image_size, 2), sizes.steps))
    ema = trainer.eval_model()
    difference = max(float((mine.detach() - averaged).abs().max())
                     for mine, averaged in zip(trainer.model.parameters(), ema.parameters(), strict=True))
    layout = {"model": _channels_last(trainer.model), "ema": _channels_last(ema)}
    details = {**_precision(trainer), **read, "ema_max_difference": difference, "ema_finite": all_finite(ema),
               "channels_last": layout}
    passed = read["finite"] and ema is not trainer.model and difference > 0 and all_finite(ema) and all(layout.values())
    return Finding(passed, details)


def _tiny_trainer(config: RunConfig) -> Trainer:
    """The engine of ``config`` around conv-BN-ReLU-conv: compiled in about 20 s on a CPU from a cold cache,
    where DeepLabv3+ takes minutes."""
    raw = build_raw_dataset(config.data, "train")
    torch.manual_seed(config.train.seed)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, raw.num_classes, 1))
    return Trainer(model, SegmentationLoss.named(config.loss.name, raw.ignore_index),
                   build_optimizer(config.optimizer, model), training_data(config, raw), config.train,
                   class_names=raw.class_names, ignore_index=raw.ignore_index, num_workers=config.data.num_workers)


def _cpp_compiler() -> bool:
    """Whether inductor has a C++ compiler for CPU kernels (``$CXX``, else g++ or clang++)."""
    return any(shutil.which(name) for name in (os.environ.get("CXX", ""), "g++", "clang++") if name)


def _compiled_matches_eager(sizes: CheckSizes) -> Finding:
    """The same steps on the same batches from the same weights, eager and ``train.compile``: the losses
    agree within ``compile_rtol`` (dropout off: compiled code draws other random numbers)."""
    workload = sizes.workload
    on_cpu = workload.device == "cpu"
    if on_cpu and not _cpp_compiler():
        return Finding(None, {}, "no C++ compiler for inductor's CPU kernels on this machine")
    build = _tiny_trainer if on_cpu else bench_trainer

    def trainer(compiled: bool) -> Trainer:
        return build(workload.config(overrides=("model.dropout=0", f"train.compile={str(compiled).lower()}")))

    eager = trainer(False)
    batches = _batches(eager, workload.image_size, 2)
    eager_losses = _read(_steps(eager, batches, sizes.steps))["losses"]
    start = time.perf_counter()
    compiled = _read(_steps(trainer(True), batches, sizes.steps))
    seconds = time.perf_counter() - start
    difference = max(abs(mine - theirs) / max(abs(theirs), 1e-12)
                     for mine, theirs in zip(compiled["losses"], eager_losses, strict=True))
    details = {**_precision(eager), "model": "conv-BN-ReLU-conv" if on_cpu else "DeepLabv3+ (the check workload)",
               "eager_losses": eager_losses, "compiled_losses": compiled["losses"],
               "max_relative_difference": difference, "rtol": sizes.compile_rtol,
               "compile_and_steps_s": seconds}
    return Finding(compiled["finite"] and difference <= sizes.compile_rtol, details)


def _out_of_memory_above(limit: int) -> Callable[[nn.Module, tuple[Any, ...]], None]:
    def hook(module: nn.Module, inputs: tuple[Any, ...]) -> None:
        if len(inputs[0]) > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    return hook


def _recovers_from_out_of_memory(sizes: CheckSizes) -> Finding:
    """One step of a batch too large for the device, ``device_microbatch_size: auto``: the trainer retries
    it with half the microbatch until one fits. A CPU cannot run out of GPU memory: there the error is
    simulated above half the batch."""
    workload = sizes.oom
    trainer = _trainer(workload)
    batch = _batches(trainer, workload.image_size, 1)[0]
    simulated = trainer.device.type != "cuda"
    hook = trainer.model.register_forward_pre_hook(_out_of_memory_above(workload.batch // 2)) if simulated else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = trainer.step(*batch)
    if hook is not None:
        hook.remove()
    read = _read([result])
    details = {"out_of_memory": "simulated" if simulated else "real", "image_size": workload.image_size,
               "batch": workload.batch, "microbatch": trainer.microbatch, **read,
               "warnings": [str(warning.message) for warning in caught if "microbatch" in str(warning.message)]}
    return Finding(trainer.microbatch < workload.batch and read["finite"] and not read["skipped_steps"], details)


class _OneRankDDP(DistInfo):
    """One process on the engine's distributed path: DDP wraps the model and all-reduces its gradients,
    which a world of one would otherwise skip."""

    @property
    def distributed(self) -> bool:
        return True


def _ddp_one_rank(sizes: CheckSizes) -> Finding:
    """A few steps under DDP in a process group of one (NCCL on a GPU, gloo on a CPU), then the group is gone."""
    workload = sizes.workload
    device = pick_device(workload.device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    with tempfile.TemporaryDirectory() as folder:
        store = dist.FileStore(os.path.join(folder, "store"), 1)
        dist.init_process_group(backend, store=store, rank=0, world_size=1, timeout=timedelta(seconds=60))
        try:
            trainer = build_trainer(workload.config(), None, dist=_OneRankDDP(0, 1, 0, device))
            before = _parameters(trainer)
            read = _read(_steps(trainer, _batches(trainer, workload.image_size, 2), sizes.steps))
            moved = len(_changed(before, _parameters(trainer)))
            wrapped = isinstance(trainer.ddp, DistributedDataParallel)
        finally:
            dist.destroy_process_group()
    details = {"backend": backend, "world_size": 1, "ddp": wrapped, **read,
               "parameters_moved": f"{moved}/{len(before)}"}
    return Finding(wrapped and read["finite"] and moved > 0, details)


def _syncs_per_step(sizes: CheckSizes) -> Finding:
    """CUDA's sync debug mode over non-logging steps of the medium recipe (fp16 grad scaler, MixUp, SAM
    every 2nd step, EMA every step, channels_last, SGDW), against what the engine documents."""
    trainer = _trainer(sizes.workload, "medium", ("ema.update_interval=1",))
    batches = _batches(trainer, sizes.workload.image_size, 2)
    trainer.step(*batches[0])  # the first step sets up: EMA's copy, momentum buffers
    cuda = trainer.device.type == "cuda"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("warn")
        try:
            results = _steps(trainer, batches, sizes.steps)
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode("default")
    syncs = [warning for warning in caught if SYNC_WARNING in str(warning.message)]
    where = Counter(f"{os.path.basename(warning.filename)}:{warning.lineno}" for warning in syncs)
    details = {**_precision(trainer), "recipe": "medium", "steps": sizes.steps, **_read(results),
               "syncs": len(syncs), "syncs_per_step": len(syncs) / sizes.steps,
               "documented_per_step": DOCUMENTED_SYNCS_PER_STEP, "where": dict(where.most_common(5))}
    if not cuda:
        return Finding(None, details, "not applicable on CPU: CUDA's sync debug mode needs a GPU (the steps ran; "
                                      "tests/engine/test_trainer.py records host reads on a CPU)")
    return Finding(len(syncs) / sizes.steps <= DOCUMENTED_SYNCS_PER_STEP, details)


CHECKS: tuple[tuple[str, Callable[[CheckSizes], Finding]], ...] = (
    ("fp16 step (grad scaler)", partial(_trains, overrides=("train.precision=fp16",))),
    ("fp16 SAM step", partial(_trains, overrides=("train.precision=fp16", "sam.interval=1"), methods=("sam",))),
    ("fp16 overflow skipped", partial(_skips_non_finite, overrides=("train.precision=fp16",))),
    ("bf16 SAM non-finite step skipped",
     partial(_skips_non_finite, overrides=("train.precision=bf16", "sam.interval=1"), methods=("sam",))),
    ("channels_last + EMA", _channels_last_ema),
    ("torch.compile matches eager", _compiled_matches_eager),
    ("out of memory -> smaller microbatch", _recovers_from_out_of_memory),
    ("DDP, one rank", _ddp_one_rank),
    ("host syncs per step", _syncs_per_step),
)


def run_checks(sizes: CheckSizes) -> Iterator[CheckResult]:
    """Every check in turn, each on its own: an error is recorded and the next check runs."""
    for name, check in CHECKS:
        start = time.perf_counter()
        try:
            finding = check(sizes)
            result = CheckResult(name, finding.passed, finding.details, finding.reason)
        except Exception as error:  # a failing check must not stop the others
            result = CheckResult(name, False, error=error_line(error))
        finally:
            release(sizes.workload.device)
        result.seconds = time.perf_counter() - start
        yield result
