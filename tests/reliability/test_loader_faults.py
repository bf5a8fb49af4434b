"""Faults of the data loading, made real: a DataLoader worker process SIGKILLed (as the out-of-memory
killer does) and a training file truncated between two epochs. A killed worker is healed and the run
is bit-identical to one without the fault; a broken file stops the run with one line and a checkpoint
that resumes exactly once the file is back, or with ``data.skip_bad`` is replaced deterministically."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers.bad_data import folder_dataset
from helpers.tiny import tiny_args, tiny_config
from torch.utils.data import Dataset, get_worker_info

from segrecipes.data.augmented import AugmentedDataset
from segrecipes.data.errors import DataError
from segrecipes.data.healing import LoaderFailed
from segrecipes.engine.checkpoint import latest_checkpoint
from segrecipes.methods import Method, StepContext
from segrecipes.run import build_trainer

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _assert_same_weights(expected: Path, actual: Path) -> None:
    first, second = latest_checkpoint(expected)[1], latest_checkpoint(actual)[1]
    assert first["clock"]["step"] == second["clock"]["step"]
    assert first["model"].keys() == second["model"].keys()
    for key in first["model"]:
        assert torch.equal(first["model"][key], second["model"][key]), key


# ----------------------------------------------------------------- a worker killed
def _kill_worker_at(monkeypatch: pytest.MonkeyPatch, markers: list[Path], samples: list[int]) -> None:
    """The worker that loads training sample ``samples[i]`` SIGKILLs itself, once (``markers[i]`` records it)."""
    original = AugmentedDataset.__getitem__

    def getitem(self: AugmentedDataset, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        for marker, sample in zip(markers, samples):
            if get_worker_info() is not None and key[0] == sample and not marker.exists():
                marker.touch()
                os.kill(os.getpid(), signal.SIGKILL)
        return original(self, key)

    monkeypatch.setattr(AugmentedDataset, "__getitem__", getitem)


@pytest.mark.slow
def test_a_killed_worker_is_healed_and_the_run_is_bit_identical(tmp_path, monkeypatch) -> None:
    cfg = tiny_config("train.duration=8ba", "data.num_workers=2", "train.checkpoint_interval=none")
    build_trainer(cfg, tmp_path / "straight").fit()

    _kill_worker_at(monkeypatch, [tmp_path / "killed-once"], [5])
    with pytest.warns(UserWarning, match=r"DataLoader worker pid \d+ was killed by SIGKILL \(often the out-of-memory "
                                         r"killer.*restarted at the same sample \(restart 1 of 3"):
        summary = build_trainer(cfg, tmp_path / "healed").fit()
    assert (tmp_path / "killed-once").exists() and summary["step"] == 8
    _assert_same_weights(tmp_path / "straight", tmp_path / "healed")


@pytest.mark.slow
def test_workers_that_keep_dying_stop_the_run_with_a_checkpoint(tmp_path, monkeypatch) -> None:
    cfg = tiny_config("train.duration=8ba", "data.num_workers=1", "train.max_loader_restarts=1",
                      "data.synthetic_train_size=32")
    _kill_worker_at(monkeypatch, [tmp_path / "first", tmp_path / "second"], [3, 9])
    trainer = build_trainer(cfg, tmp_path / "run")
    with pytest.warns(UserWarning, match="restart 1 of 1"), pytest.raises(LoaderFailed) as stopped:
        trainer.fit()
    message = str(stopped.value)
    assert "killed by SIGKILL" in message and "2 DataLoader restarts in this epoch, lower data.num_workers" in message
    assert f"the run stopped at step {trainer.clock.step} with a checkpoint" in message
    assert f"segrecipes train --resume {tmp_path / 'run'}" in message
    assert latest_checkpoint(tmp_path / "run")[1]["clock"]["step"] == trainer.clock.step >= 1


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finding a worker's pid needs Linux's /proc")
def test_cli_run_survives_an_external_sigkill_of_its_worker(tmp_path) -> None:
    args = tiny_args("train.duration=60ba", "data.num_workers=1", "data.synthetic_train_size=32")
    command = [sys.executable, "-m", "segrecipes.cli.main", "train", *args, "--run-dir"]
    straight = subprocess.run([*command, str(tmp_path / "straight")], env=ENV, capture_output=True, timeout=600)
    assert straight.returncode == 0, straight.stderr

    process = subprocess.Popen([*command, str(tmp_path / "killed")], env=ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline, killed = time.monotonic() + 300, None
    while killed is None:  # once training has logged its first row (step 10), its worker is the child process
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before its worker was seen"
        if (tmp_path / "killed" / "metrics.jsonl").exists():
            for pid in _children(process.pid):
                with contextlib.suppress(ProcessLookupError):  # a short-lived child of the start-up
                    os.kill(pid, signal.SIGKILL)
                    killed = pid
        time.sleep(0.02)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    assert f"DataLoader worker pid {killed} was killed by SIGKILL" in stderr and "Traceback" not in stderr
    _assert_same_weights(tmp_path / "straight", tmp_path / "killed")


# ----------------------------------------------------------------- a file that breaks after the checks
class BreakFile(Method):
    """After step ``step``, ``path`` is truncated to half its bytes (then undecodable)."""

    name = "break_file"

    def __init__(self, step: int, path: Path) -> None:
        self.step, self.path = step, path

    def after_step(self, context: StepContext) -> None:
        if context.step == self.step:
            self.path.write_bytes(self.path.read_bytes()[: self.path.stat().st_size // 2])


def _folder_config(root: Path, *overrides: str):  # 8 training images, 2 steps an epoch
    return tiny_config(f"data.spec=folder:{folder_dataset(root, classes=3, train_images=8)}", "train.duration=3ep",
                       "train.checkpoint_interval=1ep", *overrides)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 1])
def test_a_file_truncated_between_epochs_stops_with_a_checkpoint_and_resumes_exactly(tmp_path, workers) -> None:
    cfg = _folder_config(tmp_path / "data", f"data.num_workers={workers}")
    build_trainer(cfg, tmp_path / "straight").fit()

    image = tmp_path / "data" / "images" / "train" / "train3.jpg"
    original = image.read_bytes()
    stopped = build_trainer(cfg, tmp_path / "run", extra_methods=[BreakFile(2, image)])
    with pytest.raises(DataError) as raised:
        stopped.fit()
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{image}: cannot decode")
    assert message.endswith(f"the run stopped at step {stopped.clock.step} with a checkpoint: fix it, then continue "
                            f"with: segrecipes train --resume {tmp_path / 'run'}")
    _, state = latest_checkpoint(tmp_path / "run")
    assert state["clock"]["step"] == stopped.clock.step >= 2

    image.write_bytes(original)  # the file is back
    build_trainer(cfg, tmp_path / "run", resume=state).fit()
    _assert_same_weights(tmp_path / "straight", tmp_path / "run")


@pytest.mark.slow
def test_with_skip_bad_a_broken_file_is_replaced_deterministically_and_counted(tmp_path) -> None:
    cfg = _folder_config(tmp_path / "data", "data.skip_bad=true")
    image = tmp_path / "data" / "images" / "train" / "train3.jpg"
    original = image.read_bytes()
    summaries = []
    for run in ("first", "second"):
        image.write_bytes(original)
        with pytest.warns(UserWarning, match=f"{image}: cannot decode .*replaced by the next readable one"):
            summaries.append(build_trainer(cfg, tmp_path / run, extra_methods=[BreakFile(2, image)]).fit())
    assert summaries[0]["step"] == 6 and summaries[0]["replaced_samples"] == 2  # read once in each later epoch
    assert summaries[1]["replaced_samples"] == 2
    _assert_same_weights(tmp_path / "first", tmp_path / "second")


class _Pairs(Dataset):
    """Sample i is (i, i) as 1x2x2 images; the ones in ``broken`` raise as a truncated file does."""

    def __init__(self, count: int, broken: set[int]) -> None:
        self.count, self.broken = count, broken

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if index in self.broken:
            raise DataError(f"sample{index}.png: cannot decode (truncated)")
        return torch.full((1, 2, 2), index, dtype=torch.uint8), torch.full((2, 2), index, dtype=torch.uint8)


def test_the_replacement_is_the_next_readable_sample_with_the_same_seed() -> None:
    seen = []

    def transform(image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        seen.append(generator.initial_seed())
        return image, mask

    data = AugmentedDataset(_Pairs(5, broken={2, 3}), transform, replace_unreadable=True)
    with pytest.warns(UserWarning, match="sample2.png: cannot decode"):
        image, mask = data[(2, 77)]
    assert int(image.flatten()[0]) == 4 and int(mask.flatten()[0]) == 4  # 2 and 3 are broken: 4
    assert seen == [77] and data.replaced == 2
    image, _ = data[(4, 5)]
    assert int(image.flatten()[0]) == 4 and data.replaced == 2
    with pytest.warns(UserWarning):
        image, _ = AugmentedDataset(_Pairs(5, broken={4}), transform, replace_unreadable=True)[(4, 1)]
    assert int(image.flatten()[0]) == 0  # wraps around to the first sample
    with pytest.raises(DataError, match="sample2.png: cannot decode"):
        AugmentedDataset(_Pairs(5, broken={2}), transform)[(2, 0)]
