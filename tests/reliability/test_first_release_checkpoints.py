"""Run folders of the first release (0.1) still evaluate and resume.

The 0.1 layout, as a 0.1 run wrote it: the clock under ``progress``; evaluation rows with ``val_miou``
and ``val_pixel_acc``; the optimizer state of a plain (foreach, ``fused: None``) SGD; the config with
the loss as two weights and no ``loss.name``, and no ``data.synthetic_num_classes``. A checkpoint of
today is turned into that layout here, since 0.1's files are too large to keep in the repository.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers.tiny import tiny_args

from segrecipes.cli.main import main

pytestmark = pytest.mark.slow


def _to_first_release(state: dict) -> dict:
    state["progress"] = state.pop("clock")
    state["history"] = [{"step": row["step"], "epoch": row["epoch"], "val_miou": row["miou"],
                         "val_pixel_acc": row["pixel_acc"], "elapsed_s": row["elapsed_s"], "samples": row["samples"]}
                        for row in state["history"]]
    for group in state["optimizer"]["param_groups"]:
        group["fused"], group["foreach"] = None, None
    state["config"]["loss"] = {"ce_weight": 0.375, "dice_weight": 1.125}
    del state["config"]["data"]["synthetic_num_classes"]
    return state


def _cli(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([str(arg) for arg in args])
    captured = capsys.readouterr()
    assert exit_info.value.code == 0, captured.err
    return captured.out


def test_a_first_release_run_folder_evaluates_and_resumes(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    _cli(capsys, "train", *tiny_args("train.duration=2ba", "train.eval_interval=1ba", "train.checkpoint_interval=1ba",
                                     "schedule.name=constant", "ema.half_life=2", "ema.update_interval=1"),
         "--methods", "ema", "--loss", "dice_ce", "--run-dir", run)
    summary = json.loads((run / "summary.json").read_text())
    for path in (run / "checkpoints").glob("*.pt"):
        state = torch.load(path, weights_only=True)
        if "clock" in state and "optimizer" in state:
            torch.save(_to_first_release(state), path)

    scored = json.loads(_cli(capsys, "eval", "--checkpoint", run, "--json"))
    assert scored["miou"] == summary["miou"]  # the EMA weights, as the run itself scored them

    _cli(capsys, "train", "--resume", run, "--duration", "4ba")
    resumed = json.loads((run / "summary.json").read_text())
    assert resumed["step"] == 4 and [row["step"] for row in resumed["history"]] == [1, 2, 3, 4]
    assert all("miou" in row for row in resumed["history"])  # the old rows under today's names
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["config"]["loss"] == {"name": "ce", "ce_weight": 0.375, "dice_weight": 1.125, "class_weights": None}
