"""torch.distributed set-up under torchrun: NCCL on GPU, gloo on CPU, nothing in a single process."""

from __future__ import annotations

import contextlib
import datetime
import functools
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from segrecipes.errors import ConfigError

T = TypeVar("T")


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


def init_distributed(requested_device: str = "auto", timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group torchrun describes in the environment (or stay single-process). A collective
    that waits more than ``timeout_s`` for another rank fails instead of hanging the job."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(requested_device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        timeout = datetime.timedelta(seconds=timeout_s)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", store=_restart_store(
            world_size, timeout), rank=rank, world_size=world_size, timeout=timeout)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def _restart_store(world_size: int, timeout: datetime.timedelta) -> dist.Store | None:
    """Under torchrun, its agent's store seen through a prefix of this restart (None elsewhere: ``env://``).
    The agent keeps one store for the whole job and torch adds no prefix per restart, so restarted workers
    could read the addresses of the workers they replace and fail to connect (gloo: connection refused)."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size, is_master=False,
                          timeout=timeout)
    return dist.PrefixStore(f"segrecipes/restart-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def node_layout(world_size: int) -> tuple[int, int]:
    """(nodes, processes per node) from torchrun's ``LOCAL_WORLD_SIZE``: a job of many nodes says so at start."""
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    return max(1, world_size // per_node), per_node


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@functools.cache
def _gloo_group() -> dist.ProcessGroup:
    return dist.new_group(backend="gloo")


def control_group() -> dist.ProcessGroup | None:
    """A process group for small host-side decisions (stop now?) that must not touch the GPU queue:
    the default group under gloo, a gloo side group under NCCL."""
    return None if dist.get_backend() == "gloo" else _gloo_group()


def agreed_max(values: Sequence[float]) -> list[float]:
    """Each value's largest over the ranks (in one process, the values): what all ranks decide a step on
    (a signal on any rank, the wall time of the slowest) so that none evaluates, saves or stops alone. A
    host-side all-reduce of a few CPU numbers (gloo), no synchronization with the GPU queue."""
    if not is_distributed():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=control_group())
    return tensor.tolist()


def gathered(value: T) -> list[T]:
    """``value`` of every rank, in rank order (small picklable host state, e.g. random generator states)."""
    if not is_distributed():
        return [value]
    values: list[T | None] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value, group=control_group())
    return values  # type: ignore[return-value]


class CollectiveError(RuntimeError):
    """A collective that timed out or lost a peer, with the rank and step the backend's message leaves out."""


@contextlib.contextmanager
def named_collective_errors(rank: int, step: int, timeout_s: float) -> Iterator[None]:
    """Re-raise a failed collective as one line naming ``rank`` and ``step``: which rank stopped, and when, is
    what a user of a many-rank job needs first; the backend's own message names one of its source files."""
    try:
        yield
    except RuntimeError as error:
        text = str(error).strip()
        if not (isinstance(error, dist.DistError) or "gloo" in text):
            raise
        where = f"rank {rank}, step {step}"
        if "timed out" in text.lower():
            raise CollectiveError(f"{where}: a collective timed out after {timeout_s:g} s (another rank stopped or "
                                  "is stuck; raise train.dist_timeout if a step, evaluation or checkpoint takes "
                                  "longer)") from error
        # the first sentence, without gloo's "[source file:line]" prefix
        detail = re.sub(r"^\[[^\]]*\]\s*", "", text.splitlines()[0] if text else "").split(". ")[0]
        raise CollectiveError(f"{where}: a collective failed, another rank stopped (see its error): "
                              f"{detail or type(error).__name__}") from error


def barrier() -> None:
    if is_distributed():
        dist.barrier()
