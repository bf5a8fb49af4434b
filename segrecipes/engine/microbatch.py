"""Finding the device microbatch that fits in GPU memory, once, before the first step.

Under DDP a rank that ran out of memory in the middle of a step could not retry alone: the other
ranks would wait for it in the gradient all-reduce. So each rank probes on its own (the bare model,
no collectives), halving until a forward and backward fit, and then all ranks take the smallest.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn

from segrecipes.engine.checkpoint import set_torch_rng_state, torch_rng_state
from segrecipes.engine.distributed import is_distributed
from segrecipes.engine.skips import BufferGuard

# BatchNorm (the image-pool branch sees a 1x1 map) cannot train on one image
MIN_MICROBATCH = 2


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
