"""Rank failures under torchrun: a SIGKILLed rank is restarted and the run resumes bit for bit; without
restarts the job ends promptly naming the failed rank; restarted workers form a new group even when rank 0
is late; a stuck rank makes the others fail with a message that names rank and step; the start line says how
the job is laid out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from helpers.faults import free_port
from helpers.tiny import tiny_args, tiny_config

from segrecipes.cli.main import main
from segrecipes.engine.checkpoint import latest_checkpoint
from segrecipes.engine.distributed import CollectiveError
from segrecipes.methods import Method, StepContext
from segrecipes.run import build_trainer

TORCHRUN = str(Path(sys.executable).with_name("torchrun"))
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread per process: bit-identical CPU arithmetic
# dropout and MixUp on: each rank draws its own masks and mixing, which a resume must restore rank by rank;
# 2 images per rank, a checkpoint after every step
ARGS = tiny_args("model.dropout=0.1", "train.duration=6ba", "train.checkpoint_interval=1ba", "train.loggers=[]",
                 "mixup.enabled=true")


def _torchrun(run_dir: Path, max_restarts: int, *extra: str) -> list[str]:
    return [TORCHRUN, "--standalone", "--nproc-per-node", "2", "--max-restarts", str(max_restarts),
            "--monitor-interval", "0.2", "-m", "segrecipes.cli.main", "train", *ARGS, *extra,
            "--resume", "auto", "--run-dir", str(run_dir)]


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (torchrun's workers), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _worker(pid: int, local_rank: int) -> int:
    for child in _children(pid):
        try:
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"LOCAL_RANK={local_rank}".encode() in environ:
            return child
    raise AssertionError(f"no worker of local rank {local_rank} under torchrun (pid {pid})")


@contextmanager
def _launched(command: list[str], log: Path) -> Iterator[subprocess.Popen]:
    """torchrun in the background, its output in ``log``; on the way out it and its workers (each in a
    session of its own) are killed if still there."""
    with log.open("w") as out:
        process = subprocess.Popen(command, env=ENV, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield process
        finally:
            if process.poll() is None:
                for child in _children(process.pid):
                    os.kill(child, signal.SIGKILL)
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


def _newest_step(run_dir: Path) -> int:
    return max((int(path.stem.split("-")[1]) for path in (run_dir / "checkpoints").glob("step-*.pt")), default=0)


def _wait_for_checkpoint(run_dir: Path, process: subprocess.Popen, step: int, log: Path) -> None:
    """Until a checkpoint of ``step`` or later exists (older ones are deleted as the run goes)."""
    deadline = time.monotonic() + 120
    while _newest_step(run_dir) < step:
        assert process.poll() is None, f"torchrun ended before step {step}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no checkpoint of step {step} after 120 s:\n{log.read_text()[-3000:]}"
        time.sleep(0.05)


@pytest.mark.slow
def test_sigkilled_rank_is_restarted_and_resumes_to_identical_weights(tmp_path) -> None:
    straight = subprocess.run(_torchrun(tmp_path / "straight", 0), env=ENV, capture_output=True, text=True,
                              timeout=300)
    assert straight.returncode == 0, straight.stderr[-3000:]
    assert "world size 2 (1 node x 2), 2 images per rank, microbatch 2" in straight.stdout

    run_dir, log = tmp_path / "killed", tmp_path / "killed.log"
    with _launched(_torchrun(run_dir, 1), log) as process:
        _wait_for_checkpoint(run_dir, process, 2, log)
        os.kill(_worker(process.pid, 1), signal.SIGKILL)
        assert process.wait(timeout=300) == 0, log.read_text()[-3000:]
    output = log.read_text()
    assert output.count("run folder:") == 2, output[-3000:]  # rank 0 started twice: torchrun restarted the workers

    _, expected = latest_checkpoint(tmp_path / "straight")
    _, actual = latest_checkpoint(run_dir)
    assert expected["clock"]["step"] == actual["clock"]["step"] == 6
    assert expected["model"].keys() == actual["model"].keys()
    for key, value in expected["model"].items():
        assert torch.equal(value, actual["model"][key]), key


@pytest.mark.slow
def test_rank_death_without_restarts_ends_the_job_promptly_naming_the_rank(tmp_path) -> None:
    run_dir, log = tmp_path / "run", tmp_path / "run.log"
    with _launched(_torchrun(run_dir, 0, "--set", "train.duration=1000ba"), log) as process:
        _wait_for_checkpoint(run_dir, process, 2, log)
        os.kill(_worker(process.pid, 1), signal.SIGKILL)
        killed = time.monotonic()
        code = process.wait(timeout=120)
        seconds = time.monotonic() - killed
    output = log.read_text()
    assert code != 0 and seconds < 60, (code, seconds, output[-3000:])
    assert "rank      : 1 (local_rank: 1)" in output and "Signal 9 (SIGKILL)" in output, output[-3000:]
    # the survivor does not wait for dist_timeout: its next collective fails at once; one line names it and its step
    assert "error: rank 0, step " in output and "a collective failed, another rank stopped" in output, \
        output[-3000:]


# attempt 0: rank 1 fails after the group worked; attempt 1: rank 0 joins 4 s late, so rank 1 reads the store first
LATE_RANK_0 = """
import os, sys, time
import torch, torch.distributed as dist
from segrecipes.engine.distributed import init_distributed
attempt, rank = os.environ["TORCHELASTIC_RESTART_COUNT"], int(os.environ["RANK"])
if attempt == "1" and rank == 0:
    time.sleep(4)
init_distributed("cpu", timeout_s=20)
total = torch.ones(())
dist.all_reduce(total)
print(f"attempt {attempt} rank {rank}: {total.item():g}\\n", end="", flush=True)  # one write: no interleaving
if attempt == "0" and rank == 1:
    sys.exit(1)
"""


@pytest.mark.slow
def test_restarted_workers_do_not_connect_to_the_workers_they_replace(tmp_path) -> None:
    """torchrun's agent keeps one store for the job: without a prefix per restart, a restarted rank 1 would
    read the address of the dead rank 0 and fail to connect."""
    script = tmp_path / "late_rank_0.py"
    script.write_text(LATE_RANK_0)
    log = tmp_path / "late.log"
    with _launched([TORCHRUN, "--standalone", "--nproc-per-node", "2", "--max-restarts", "1", "--monitor-interval",
                    "0.2", str(script)], log) as process:
        code = process.wait(timeout=120)
    output = log.read_text()
    assert code == 0, output[-3000:]
    assert "attempt 1 rank 0: 2" in output and "attempt 1 rank 1: 2" in output, output[-3000:]


class StuckAtStep(Method):
    """Rank 1 stops stepping after ``step`` until ``release`` exists, as a hung data read or device would."""

    name = "stuck_at_step"

    def __init__(self, step: int, release: Path) -> None:
        self.step, self.release = step, release

    def after_step(self, context: StepContext) -> None:
        if context.step == self.step and dist.get_rank() == 1:
            deadline = time.monotonic() + 60
            while not self.release.exists() and time.monotonic() < deadline:
                time.sleep(0.05)


def _stuck_rank_main(rank: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    here = Path(folder)
    (here / f"ready{rank}").touch()  # start together: the short timeout also bounds joining the group
    while not (here / f"ready{1 - rank}").exists():
        time.sleep(0.01)
    release = here / "release"
    trainer = build_trainer(tiny_config("train.dist_timeout=5", "train.duration=4ba"), None,
                            extra_methods=[StuckAtStep(2, release)])
    try:
        trainer.fit()
    except CollectiveError as error:
        (here / f"error{rank}").write_text(str(error))
    finally:
        release.touch()


@pytest.mark.slow
def test_a_stuck_rank_makes_the_others_fail_naming_rank_and_step(tmp_path) -> None:
    started = time.monotonic()
    mp.spawn(_stuck_rank_main, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    assert (tmp_path / "error0").read_text() == (
        "rank 0, step 2: a collective timed out after 5 s (another rank stopped or is stuck; raise "
        "train.dist_timeout if a step, evaluation or checkpoint takes longer)")
    # rank 1, released, finds rank 0 gone (or, if it is still there, not answering)
    assert (tmp_path / "error1").read_text().startswith("rank 1, step 2: a collective "), \
        (tmp_path / "error1").read_text()
    assert time.monotonic() - started < 60


def test_start_line_gives_world_size_nodes_and_batch_per_rank(tmp_path, capsys, monkeypatch) -> None:
    for name in ("WORLD_SIZE", "LOCAL_WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["train", *tiny_args("train.duration=1ba", "train.loggers=[]"), "--run-dir", str(tmp_path / "run")])
    assert exited.value.code == 0
    assert "world size 1 (1 node x 1), 4 images per rank, microbatch 4" in capsys.readouterr().out


class SlowRank(Method):
    """Rank 1 takes ``seconds`` longer per step: its wall clock runs ahead of rank 0's."""

    name = "slow_rank"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def after_step(self, context: StepContext) -> None:
        if dist.get_rank() == 1:
            time.sleep(self.seconds)


def _wall_clock_rank_main(rank: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    config = tiny_config("train.dist_timeout=30", "train.duration=4s", "train.eval_interval=1s",
                         "train.checkpoint_interval=1s")
    trainer = build_trainer(config, Path(folder) / "run", extra_methods=[SlowRank(0.15)])
    summary = trainer.fit()
    (Path(folder) / f"rank{rank}").write_text(f"{summary['step']} {len(summary['history'])}")


@pytest.mark.slow
def test_ranks_of_different_speeds_agree_on_a_wall_clock_budget(tmp_path) -> None:
    """Time budgets and intervals are decided on the slowest rank's clock: both ranks evaluate, checkpoint and
    stop at the same steps (deciding alone, one would wait in a collective the other never joins)."""
    mp.spawn(_wall_clock_rank_main, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    steps0, evaluations0 = map(int, (tmp_path / "rank0").read_text().split())
    assert (tmp_path / "rank1").read_text() == f"{steps0} {evaluations0}"
    assert steps0 > 1 and evaluations0 >= 2
    _, state = latest_checkpoint(tmp_path / "run")
    assert state["clock"]["step"] == steps0 and len(state["rank_rng"]) == 2
