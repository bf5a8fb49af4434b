"""SIGKILL at random moments (checkpoint writes included) never loses a run or changes its result."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers.tiny import tiny_args

from segrecipes.engine.checkpoint import atomic_save, latest_checkpoint, load_checkpoint

TINY = [*tiny_args("train.duration=14ba", "train.checkpoint_interval=1ba"), "--methods", "ema"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _command(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "segrecipes.cli.main", "train", *TINY, "--run-dir", str(run_dir),
            "--resume", "auto"]


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    _, state = latest_checkpoint(run_dir)
    assert state["clock"]["step"] == 14
    return {**state["model"], **{f"eval.{k}": v for k, v in state["eval_model"].items()}}


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_matches_uninterrupted(tmp_path) -> None:
    straight = tmp_path / "straight"
    subprocess.run(_command(straight), check=True, env=ENV, capture_output=True, timeout=600)

    killed = tmp_path / "killed"
    rng = random.Random(1234)
    kills = 0
    for _ in range(3):
        process = subprocess.Popen(_command(killed), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        # wait for the run to be checkpointing (a new file every step), then kill at a random instant
        while not (killed / "checkpoints" / "last.pt").exists() and process.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.6))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
        _, state = latest_checkpoint(killed)  # always a loadable checkpoint after a kill
        assert state["clock"]["step"] >= 1
    assert kills >= 1
    subprocess.run(_command(killed), check=True, env=ENV, capture_output=True, timeout=600)

    expected, actual = _final_weights(straight), _final_weights(killed)
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key


@pytest.mark.slow
def test_kill_during_checkpoint_write_keeps_previous_file(tmp_path) -> None:
    target = tmp_path / "last.pt"
    atomic_save({"config": {}, "model": {"w": torch.ones(3)}}, target)
    script = (
        "import torch, sys; from segrecipes.engine.checkpoint import atomic_save; "
        "atomic_save({'config': {}, 'model': {'w': torch.zeros(64_000_000)}}, __import__('pathlib').Path(sys.argv[1]))"
    )
    process = subprocess.Popen([sys.executable, "-c", script, str(target)])
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".last.pt.tmp") for p in tmp_path.iterdir()):  # the write has begun
        assert process.poll() is None and time.monotonic() < deadline, "the writer ended before it was killed"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert torch.equal(load_checkpoint(target)["model"]["w"], torch.ones(3))
