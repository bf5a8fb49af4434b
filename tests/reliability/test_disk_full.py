"""A disk that fills up during a run (real failed writes: a file-size limit, EFBIG) costs at most the
work since the last checkpoint: no partial file stays, the last good checkpoint is untouched, a dead
process's leftovers are cleared on resume, and the run ends as an uninterrupted one does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from helpers.faults import DiskFullBetween, dead_pid, small_files, temporaries
from helpers.tiny import tiny_args, tiny_config

from segrecipes.disk import OptionalWrites, os_error_of, remove_stale_temporaries, write_failure
from segrecipes.engine.checkpoint import CheckpointWriteError, atomic_save, latest_checkpoint, load_checkpoint
from segrecipes.run import build_trainer

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
EVERY_STEP = ("train.duration=6ba", "train.checkpoint_interval=1ba", "train.keep_last=2")


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return latest_checkpoint(run_dir)[1]["model"]


def _assert_equal(expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor]) -> None:
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key


def test_a_failed_write_is_described_with_what_where_needed_and_free(tmp_path) -> None:
    error = OSError(28, "No space left on device")
    line = write_failure("the checkpoint of step 6", tmp_path, error, needed=87_100_000)
    assert line.startswith(f"could not write the checkpoint of step 6 ({tmp_path}): No space left on device (needs 87.1 MB, ")
    assert line.endswith(" free)") and "\n" not in line
    # torch.save reports a failed write as a RuntimeError raised while handling the OSError
    try:
        try:
            raise error
        except OSError:
            raise RuntimeError("unexpected pos 704 vs 598")  # noqa: B904 - the implicit context is the point
    except RuntimeError as wrapped:
        assert os_error_of(wrapped) is error
    assert os_error_of(RuntimeError("a bug")) is None


def test_atomic_save_on_a_full_disk_leaves_the_old_file_and_no_temporary(tmp_path) -> None:
    target = tmp_path / "best.pt"
    atomic_save({"config": {}, "model": {"w": torch.ones(3)}}, target)
    full = DiskFullBetween(0, -1, limit=10_000)
    full.after_step(type("Context", (), {"step": 0})())
    try:
        with pytest.raises(Exception) as raised:
            atomic_save({"config": {}, "model": {"w": torch.zeros(100_000)}}, target)
    finally:
        full.free()
    assert os_error_of(raised.value) is not None
    assert torch.equal(load_checkpoint(target)["model"]["w"], torch.ones(3))
    assert temporaries(tmp_path) == []


def test_optional_writes_warn_once_per_streak_and_pass_other_errors(tmp_path) -> None:
    writes = OptionalWrites()
    with pytest.warns(UserWarning, match=r"could not write metrics.jsonl .*training goes on without it"):
        with writes.attempt("metrics.jsonl", tmp_path):
            raise OSError(28, "No space left on device")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same streak: no second warning
        with writes.attempt("metrics.jsonl", tmp_path):
            raise OSError(28, "No space left on device")
    with pytest.raises(KeyError):
        with writes.attempt("metrics.jsonl", tmp_path):
            raise KeyError("a bug is not a full disk")


def test_stale_temporaries_of_dead_processes_are_removed_and_live_ones_kept(tmp_path) -> None:
    dead = tmp_path / "checkpoints" / f".step-00000006.pt.tmp-{dead_pid()}"
    link = tmp_path / "checkpoints" / f".last.pt.link-{dead_pid()}"
    mine = tmp_path / f".summary.json.tmp-{os.getpid()}"
    for path in (dead, link, mine):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 10)
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted([dead, link])
    assert mine.exists() and not dead.exists() and not link.exists()


@pytest.mark.slow
def test_a_disk_full_for_two_checkpoints_costs_nothing_and_training_goes_on(tmp_path) -> None:
    cfg = tiny_config(*EVERY_STEP)
    build_trainer(cfg, tmp_path / "straight").fit()

    full = DiskFullBetween(start=2, end=4)
    try:
        with pytest.warns(UserWarning) as caught:
            summary = build_trainer(cfg, tmp_path / "full", extra_methods=[full]).fit()
    finally:
        full.free()
    messages = [str(warning.message) for warning in caught]
    failed = [message for message in messages if message.startswith("could not write the checkpoint")]
    assert len(failed) == 2, messages
    assert "of step 2" in failed[0] and "File too large" in failed[0] and "needs " in failed[0]
    assert "training goes on and the next checkpoint tries again (the last good checkpoint is step 1" in failed[0]
    assert "the last good checkpoint is step 1" in failed[1]  # step 2 never became one
    assert summary["step"] == 6
    assert temporaries(tmp_path / "full") == []
    _assert_equal(_weights(tmp_path / "straight"), _weights(tmp_path / "full"))


@pytest.mark.slow
def test_too_many_failed_checkpoints_stop_the_run_and_the_last_good_one_resumes_exactly(tmp_path) -> None:
    cfg = tiny_config(*EVERY_STEP, "train.max_failed_checkpoints=1")
    build_trainer(cfg, tmp_path / "straight").fit()

    full = DiskFullBetween(start=2, end=99)
    try:
        with pytest.warns(UserWarning, match="of step 2"), pytest.raises(CheckpointWriteError) as stopped:
            build_trainer(cfg, tmp_path / "full", extra_methods=[full]).fit()
    finally:
        full.free()
    message = str(stopped.value)
    assert message.startswith("could not write the checkpoint of step 3") and "\n" not in message
    assert f"2 failed in a row, the last good checkpoint is step 1: free space, then continue with: " \
           f"segrecipes train --resume {tmp_path / 'full'}" in message
    assert temporaries(tmp_path / "full") == []
    path, state = latest_checkpoint(tmp_path / "full")
    assert state["clock"]["step"] == 1

    build_trainer(cfg, tmp_path / "full", resume=state).fit()
    _assert_equal(_weights(tmp_path / "straight"), _weights(tmp_path / "full"))


def _train(run_dir: Path, *extra: str, resume: bool = False, limit: int | None = None
           ) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "segrecipes.cli.main", "train", *tiny_args(*EVERY_STEP, *extra),
               *(["--resume", str(run_dir)] if resume else ["--run-dir", str(run_dir)])]
    return subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600,
                          preexec_fn=small_files(limit) if limit else None)


@pytest.mark.slow
def test_cli_on_a_full_disk_exits_1_in_one_line_and_resumes_after_a_dead_writer(tmp_path) -> None:
    for duration, resume in (("3ba", False), ("6ba", True)):  # the same run, extended, on a disk with room
        straight = _train(tmp_path / "straight", f"train.duration={duration}", resume=resume)
        assert straight.returncode == 0, straight.stderr

    run = tmp_path / "run"
    first = _train(run, "train.duration=3ba")
    assert first.returncode == 0, first.stderr
    # the disk fills up: the checkpoints of steps 4 and 5 fail (training goes on), the final one stops the run
    full = _train(run, "train.duration=6ba", resume=True, limit=1_000_000)
    assert full.returncode == 1, full.stderr
    assert "Traceback" not in full.stderr
    last_line = full.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: could not write the checkpoint of step 6") and "File too large" in last_line
    assert f"the last good checkpoint is step 3: free space, then continue with: segrecipes train --resume {run}" \
        in last_line
    assert full.stderr.count("training goes on and the next checkpoint tries again") == 2
    assert temporaries(run) == []
    assert latest_checkpoint(run)[1]["clock"]["step"] == 3

    # a writer killed on that disk left its partial file: the resume removes it before writing anything
    leftover = run / "checkpoints" / f".step-00000006.pt.tmp-{dead_pid()}"
    leftover.write_bytes(b"\0" * 4096)
    resumed = _train(run, "train.duration=6ba", resume=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"removed {leftover}, left half-written by a process that is gone" in resumed.stderr
    assert not leftover.exists() and temporaries(run) == []
    _assert_equal(_weights(tmp_path / "straight"), _weights(run))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows and all("step" in row for row in rows)  # no half row from the failed writes
