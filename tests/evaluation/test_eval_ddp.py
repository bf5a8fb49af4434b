"""Two gloo processes score every image exactly once and agree with one process."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from helpers.eval_fakes import random_dataset
from torch import nn

from segrecipes.evaluation.evaluate import evaluate
from segrecipes.evaluation.options import InferenceOptions

CLASSES = 4
SIZES = [(24, 32), (32, 24), (24, 32), (20, 20), (24, 32)]  # odd count: ranks get 3 and 2 images


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, CLASSES, 3, padding=1))


def run_evaluation() -> tuple[dict, int]:
    scored = []
    metrics = evaluate(
        small_model(), random_dataset(SIZES, CLASSES), InferenceOptions(protocol="standard", size=16, batch_size=2),
        on_scored=lambda prediction, mask: scored.append(mask.numel()),
    )
    return metrics.to_dict(), sum(scored)


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        metrics, pixels = run_evaluation()
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps({"metrics": metrics, "pixels": pixels}))
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_process_evaluation_equals_one_process(tmp_path):
    expected, all_pixels = run_evaluation()
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    results = [json.loads(Path(tmp_path, f"rank{rank}.json").read_text()) for rank in range(2)]
    for result in results:
        assert result["metrics"] == expected
    # every image scored exactly once across the ranks
    assert results[0]["pixels"] + results[1]["pixels"] == all_pixels == sum(h * w for h, w in SIZES)
    assert results[0]["pixels"] == sum(h * w for h, w in SIZES[0::2])
