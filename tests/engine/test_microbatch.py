"""Finding the device microbatch that fits, before the first step, and all ranks agreeing on it."""

from __future__ import annotations

import os
import socket
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from segrecipes.engine.microbatch import largest_fitting, probe_microbatch
from segrecipes.engine.skips import BufferGuard
from segrecipes.methods import SegmentationLoss


class FitsUpTo(nn.Module):
    """A conv net with BatchNorm and dropout that runs out of GPU memory above ``limit`` images."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.layers = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Dropout2d(0.5),
                                    nn.Conv2d(4, 3, 1))
        self.seen: list[int] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.seen.append(len(images))
        if len(images) > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.layers(images)


def _probe(limit: int, start: int = 16) -> tuple[int, FitsUpTo, bool]:
    """The size found, the model, and whether the random state after the probe is the one before it."""
    torch.manual_seed(0)
    model = FitsUpTo(limit)
    images, target = torch.randn(3, 8, 8), torch.randint(0, 3, (8, 8))
    before = torch.get_rng_state()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "microbatch lowered": what is measured here is the size
        size = probe_microbatch(model, SegmentationLoss(), images, target, start, None, BufferGuard(model))
    return size, model, torch.equal(torch.get_rng_state(), before)


def test_the_probe_halves_until_a_step_fits_and_leaves_no_trace() -> None:
    torch.manual_seed(0)
    untouched = FitsUpTo(5).state_dict()
    size, model, same_rng = _probe(limit=5)
    assert size == 4 and model.seen == [16, 8, 4]
    assert same_rng  # dropout's draws were given back
    for key, value in model.state_dict().items():  # BatchNorm statistics (and their counter) as before
        assert torch.equal(value, untouched[key]), key
    assert all(param.grad is None for param in model.parameters())


def test_when_nothing_fits_the_error_is_raised() -> None:
    tried: list[int] = []

    def never_fits(size: int) -> None:
        tried.append(size)
        raise torch.cuda.OutOfMemoryError("full")

    with pytest.raises(torch.cuda.OutOfMemoryError), pytest.warns(UserWarning) as warned:
        largest_fitting(never_fits, 8)
    assert tried == [8, 4, 2]
    assert [str(warning.message) for warning in warned] == [
        "out of GPU memory: device microbatch lowered to 4", "out of GPU memory: device microbatch lowered to 2"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank(rank: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        size, _, _ = _probe(limit=16 if rank == 0 else 3)  # rank 1 has less memory free
        torch.save(size, Path(folder) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ranks_agree_on_the_smallest_microbatch_that_fits(tmp_path: Path) -> None:
    """A rank that retried alone in the middle of a step would leave the others waiting in the
    gradient all-reduce: the ranks probe on their own, then take the smallest size together."""
    mp.spawn(_rank, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    assert [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)] == [2, 2]
