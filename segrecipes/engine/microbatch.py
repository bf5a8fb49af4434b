"""The device microbatch that fits in GPU memory (``train.device_microbatch_size: auto``).

In one process a step that runs out of memory is retried from where it started with half the
microbatch (:func:`retried_on_oom`). Under DDP a rank could not retry alone: the other ranks would wait
for it in the gradient all-reduce. So there each rank probes once before the first step on its own (the
bare model, no collectives), halving until a forward and backward fit, and then all ranks take the
smallest (:func:`probe_microbatch`).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from segrecipes.engine.checkpoint import set_torch_rng_state, torch_rng_state
from segrecipes.engine.distributed import is_distributed
from segrecipes.engine.skips import BufferGuard
from segrecipes.errors import ConfigError

# BatchNorm (the image-pool branch sees a 1x1 map) cannot train on one image
MIN_MICROBATCH = 2
T = TypeVar("T")


def largest_fitting(attempt: Callable[[int], None], start: int, minimum: int = MIN_MICROBATCH) -> int:
    """The first of ``start``, ``start // 2``, ... (not below ``minimum``) for which ``attempt(size)``
    does not run out of GPU memory; re-raises when even ``minimum`` does not fit."""
    size = start
    while True:
        try:
            attempt(size)
            return size
        except torch.cuda.OutOfMemoryError:
            if size // 2 < minimum:
                raise
        # outside the handler: the error's traceback no longer holds the failed attempt's tensors
        size //= 2
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        warnings.warn(f"out of GPU memory: device microbatch lowered to {size}", stacklevel=2)


def agree_on_smallest(size: int, device: torch.device) -> int:
    """The smallest ``size`` over all ranks (one collective; ``size`` itself in a single process)."""
    if not is_distributed():
        return size
    tensor = torch.tensor(size, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return int(tensor.item())


def probe_microbatch(
    model: nn.Module, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], images: torch.Tensor,
    target: torch.Tensor, start: int, amp_dtype: torch.dtype | None, buffers: BufferGuard,
) -> int:
    """The microbatch all ranks can run: forward and backward of ``start``, ``start // 2``... copies of
    one normalized sample (``images`` (3, H, W), ``target``) through the bare ``model`` (no collective
    until the ranks agree at the end). The model's buffers (saved and restored by ``buffers``),
    gradients and the random state are left as they were."""
    device = images.device
    rng = torch_rng_state(device)
    buffers.save()

    def attempt(size: int) -> None:
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(images.expand(size, *images.shape))
        loss_fn(logits, target.expand(size, *target.shape)).backward()
        model.zero_grad(set_to_none=True)

    try:
        return agree_on_smallest(largest_fitting(attempt, start), device)
    finally:
        model.zero_grad(set_to_none=True)
        buffers.restore()
        set_torch_rng_state(rng, device)


def retried_on_oom(step: Callable[[int], T], microbatch: int, retry: bool, device: torch.device,
                   buffers: BufferGuard, optimizer: torch.optim.Optimizer, where: str) -> tuple[T, int]:
    """``step(microbatch)`` and the microbatch it ran with. Out of GPU memory with ``retry``, the step runs
    again from where it started (BatchNorm buffers, gradients and random state restored) with half the
    microbatch (:func:`largest_fitting`); when even :data:`MIN_MICROBATCH` does not fit, or without
    ``retry``, the error is re-raised with a note naming ``where`` (step and rank) and the setting to lower."""
    rng = torch_rng_state(device) if retry else None
    results: list[T] = []
    tried = [microbatch]

    def attempt(size: int) -> None:
        tried.append(size)
        if size < microbatch:  # a retry: back to where the step started (the first attempt is there already)
            buffers.restore()
            optimizer.zero_grad(set_to_none=True)
            set_torch_rng_state(rng, device)
        results.append(step(size))

    try:
        size = largest_fitting(attempt, microbatch) if retry else (attempt(microbatch) or microbatch)
    except torch.cuda.OutOfMemoryError as error:
        error.add_note(f"{where}, device microbatch {tried[-1]}: set train.device_microbatch_size lower")
        raise
    return results[-1], size


def device_batches(global_batch: int, world_size: int, wanted: int | str) -> tuple[int, int]:
    """(images per rank, images per microbatch) of a global batch; ``wanted``: the microbatch asked for, or
    ``auto`` (the rank's whole batch until memory says otherwise)."""
    if global_batch % world_size:
        raise ConfigError(f"train.global_batch_size: {global_batch} is not divisible by the world size {world_size}")
    per_rank = global_batch // world_size
    microbatch = min(per_rank if wanted == "auto" else int(wanted), per_rank)
    if microbatch < MIN_MICROBATCH:
        raise ConfigError(f"train: {per_rank} image(s) per device and microbatch {microbatch}: BatchNorm needs at "
                          f"least {MIN_MICROBATCH} images per microbatch")
    return per_rank, microbatch


def accumulated_gradients(
    forward: Callable[[torch.Tensor], torch.Tensor], loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    images: torch.Tensor, target: torch.Tensor, microbatch: int, ddp: DistributedDataParallel | None,
    scaler: torch.amp.GradScaler | None, amp_dtype: torch.dtype | None, optimizer: torch.optim.Optimizer,
) -> Callable[[bool], torch.Tensor]:
    """``compute_grads(sync)`` for a batch (what :class:`~segrecipes.methods.base.StepTools` calls): the
    gradients of the mean loss accumulated over microbatches of at least ``microbatch`` images (never a
    lone image), all-reduced under DDP only on the last one and only when ``sync``; returns the loss."""

    def compute(sync: bool) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        count = max(1, len(images) // microbatch)
        chunks = list(zip(images.tensor_split(count), target.tensor_split(count)))
        total = torch.zeros((), device=images.device)
        for index, (chunk_images, chunk_target) in enumerate(chunks):
            no_sync = ddp is not None and not (sync and index == len(chunks) - 1)
            with ddp.no_sync() if no_sync else contextlib.nullcontext():  # type: ignore[union-attr]
                with torch.autocast(images.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    logits = forward(chunk_images)
                loss = loss_fn(logits, chunk_target) * (len(chunk_images) / len(images))
                (scaler.scale(loss) if scaler else loss).backward()
            total += loss.detach()
        return total

    return compute
