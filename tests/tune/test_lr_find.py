"""The learning-rate range test: its arithmetic by hand, its suggestion on a convex problem whose best
rate is known, ``optimizer.lr: auto`` recorded in the run and not searched again on resume, and the
``segrecipes lr-find`` command."""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from torch import nn

from helpers.tiny import tiny_args, tiny_config

import segrecipes.run
from segrecipes import SGDW, Trainer, TrainSettings
from segrecipes.cli.main import main
from segrecipes.engine.lr_find import range_test
from segrecipes.optim.lr_find import LRCurve, RangeTest, add_loss, smoothed_value, suggested_lr
from segrecipes.run import LR_FIND_RECORD, build_trainer, resumed_config


def cli(*args: str) -> int | str | None:
    """The exit code of ``segrecipes ARGS`` run in this process."""
    with pytest.raises(SystemExit) as ended:
        main(list(args))
    return ended.value.code


def test_the_rates_grow_geometrically_from_start_to_end() -> None:
    test = RangeTest(start_lr=1e-3, end_lr=10, steps=5)
    assert [test.lr_at(index) for index in range(5)] == pytest.approx([1e-3, 1e-2, 1e-1, 1, 10])


def test_the_smoothed_loss_is_a_bias_corrected_moving_average() -> None:
    # by hand, beta 0.5: averages 0.5 * 4 = 2, then 0.5 * 2 + 0.5 * 2 = 2; corrections 1 - 0.5, 1 - 0.25
    assert smoothed_value([4.0], 0.5) == pytest.approx(4.0)
    assert smoothed_value([4.0, 2.0], 0.5) == pytest.approx(2.0 / 0.75)


def test_the_suggestion_is_a_tenth_of_the_rate_at_the_lowest_smoothed_loss() -> None:
    assert suggested_lr([0.01, 0.1, 1.0, 10.0], [3.0, 2.0, 1.0, 5.0]) == pytest.approx(0.1)


def test_the_test_stops_when_the_loss_diverges_or_is_not_finite() -> None:
    test = RangeTest(smoothing=0.0, diverge=4.0)
    curve = LRCurve()
    assert not add_loss(curve, 0.1, 1.0, test)
    assert not add_loss(curve, 0.2, 3.9, test)
    assert add_loss(curve, 0.4, 4.1, test) and curve.stopped_early
    assert add_loss(LRCurve(), 0.1, math.nan, test)


class Offset(nn.Module):
    """``w * x``: for inputs of ones and targets 2 and 4, the mean loss ``curvature * ((w - 3)^2 + 1)`` is a
    parabola; a batch of two has a noisy gradient, as a real one has, and the loss never reaches 0."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images * self.weight


def _parabola_trainer(curvature: float) -> Trainer:
    def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return curvature * ((output[:, 0] - target) ** 2).mean()

    data = [(torch.ones(1, 1, 1), torch.full((1, 1), value)) for value in (2.0, 4.0, 2.0, 4.0)]
    settings = TrainSettings(duration="1000ba", global_batch_size=2, device="cpu", eval_interval=None,
                             checkpoint_interval=None, progress="none")
    model = Offset()
    return Trainer(model, loss, SGDW(model.parameters(), lr=1.0, momentum=0.0), data, settings)


@pytest.mark.parametrize("curvature", [1.0, 10.0])
def test_on_a_parabola_the_suggestion_is_stable_and_near_the_best_rate(curvature: float) -> None:
    """Gradient descent on ``c (w - 3)^2`` multiplies the error by ``1 - 2 c lr`` each step: it is fastest
    at ``lr = 1 / (2c)`` (one step) and diverges above ``1 / c``. The smoothed loss is lowest between the
    two (the noise of a batch makes the error grow a little before the edge), so the suggestion, a tenth
    of it, is stable and within 10x of the best rate, and follows the curvature."""
    best, edge = 1 / (2 * curvature), 1 / curvature
    curve, suggestion = range_test(_parabola_trainer(curvature), RangeTest(start_lr=1e-4 / curvature,
                                                                          end_lr=100 / curvature, steps=100))
    lowest = curve.lrs[curve.smoothed.index(min(curve.smoothed))]
    assert best <= lowest <= edge * 2.5  # the smoothed loss lags the raw one by a few steps
    assert best / 10 <= suggestion < edge * 0.5
    assert curve.stopped_early  # the loss exploded past the edge and the test ended there
    assert curve.lrs[-1] < 100 / curvature


@pytest.mark.slow
def test_lr_auto_is_found_recorded_and_not_searched_again_on_resume(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("segrecipes.run.AUTO_LR_TEST", RangeTest(steps=8))
    run_dir = tmp_path / "run"
    config = tiny_config("optimizer.lr=auto", "train.duration=4ba", "train.checkpoint_interval=2ba")
    trainer = build_trainer(config, run_dir)
    found = trainer.optimizer.param_groups[0]["initial_lr"]
    record = json.loads((run_dir / LR_FIND_RECORD).read_text())
    assert found == record["suggestion"] == pytest.approx(suggested_lr(record["lrs"], record["smoothed"]))
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["optimizer"]["lr"] == found
    trainer.fit()

    def no_search(*args: object, **kwargs: object) -> None:
        raise AssertionError("a resumed run searched for its learning rate again")

    monkeypatch.setattr("segrecipes.run.lr_range_test", no_search)
    longer, state = resumed_config(run_dir, ["train.duration=6ba", "optimizer.lr=auto"])
    resumed = build_trainer(longer, run_dir, resume=state)
    assert resumed.optimizer.param_groups[0]["initial_lr"] == found
    again = build_trainer(config.model_copy(update={"train": longer.train}), run_dir, resume="auto")
    assert again.optimizer.param_groups[0]["initial_lr"] == found


@pytest.mark.slow
def test_lr_find_command_prints_the_suggestion_and_writes_the_curve_and_plot(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "lr"
    assert cli("lr-find", *tiny_args(), "--steps", "10", "--out", str(out)) == 0
    record = json.loads((out / "lr_find.json").read_text())
    printed = capsys.readouterr().out
    assert f"suggested optimizer.lr {record['suggestion']:g}" in printed
    assert len(record["lrs"]) <= 10 and (out / "lr_find.png").stat().st_size > 0


@pytest.mark.parametrize("args, message", [
    (["--steps", "1"], "steps >= 2"),
    (["--start-lr", "1", "--end-lr", "0.1"], "start_lr < end_lr"),
])
def test_lr_find_refuses_bad_ranges_in_one_line(args: list[str], message: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code = cli("lr-find", *tiny_args(), "--out", str(tmp_path / "lr"), *args)
    error = capsys.readouterr().err
    assert code == 2 and message in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "lr").exists()


def _auto_lr_rank(rank: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    segrecipes.run.AUTO_LR_TEST = RangeTest(steps=8)
    try:
        trainer = build_trainer(tiny_config("optimizer.lr=auto", "train.global_batch_size=8"), Path(folder) / "run")
        (Path(folder) / f"rank{rank}.json").write_text(json.dumps(trainer.optimizer.param_groups[0]["initial_lr"]))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_under_two_ranks_rank_0_decides_and_both_use_its_rate(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_auto_lr_rank, args=(port, str(tmp_path)), nprocs=2, join=True)
    rates = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert rates[0] == rates[1] == json.loads((tmp_path / "run" / LR_FIND_RECORD).read_text())["suggestion"]
