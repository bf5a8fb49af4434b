"""torch.distributed set-up under torchrun: NCCL on GPU, gloo on CPU, nothing in a single process."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from segrecipes.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(requested: str, local_rank: int = 0) -> torch.device:
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("train.device: 'cuda' was asked for but no GPU is visible")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(requested_device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes in the environment (or stay single-process)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(requested_device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@functools.cache
def _gloo_group() -> dist.ProcessGroup:
    return dist.new_group(backend="gloo")


def control_group() -> dist.ProcessGroup | None:
    """A process group for small host-side decisions (stop now?) that must not touch the GPU queue:
    the default group under gloo, a gloo side group under NCCL."""
    return None if dist.get_backend() == "gloo" else _gloo_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()
