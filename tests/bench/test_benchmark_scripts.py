"""The scripts in benchmarks/ (not shipped in the package) run as BENCHMARKS.md writes them, at tiny sizes,
so that the figures there stay reproducible."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _run(script: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                          timeout=300, cwd=BENCHMARKS.parent)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout[done.stdout.index("{"):])


@pytest.mark.slow
def test_loss_cost_times_every_loss_against_ce() -> None:
    result = _run("loss_cost.py", "--classes", "5", "--batch", "2", "--size", "16", "--rounds", "2", "--repeats", "1")
    assert list(result["ms"]) == ["CE", "Dice+CE", "MixUp CE", "MixUp Dice+CE"]
    assert result["ratio_to_ce"]["CE"] == 1.0 and all(ms > 0 for ms in result["ms"].values())


@pytest.mark.slow
def test_the_pipeline_side_by_side_runs_on_camvid(camvid_root: Path) -> None:
    result = _run("pipeline_vs_reference.py", "--data", str(camvid_root), "--crop", "64", "--samples", "8",
                  "--rounds", "1")
    for where in ("main process", "one DataLoader worker"):
        rates = result[where]["samples_per_s"]
        assert set(rates) == {"segrecipes", "reference (PIL)"} and min(rates.values()) > 0
        assert result[where]["ratio_to_reference"] > 0


@pytest.mark.slow
def test_ema_vs_raw_scores_both_weights_of_a_run(tmp_path: Path) -> None:
    from helpers.tiny import tiny_config

    from segrecipes.evaluation.evaluate import evaluate
    from segrecipes.run import build_trainer

    trainer = build_trainer(tiny_config("ema.half_life=2", "ema.update_interval=1", methods=("ema",)),
                            tmp_path / "run")
    trainer.fit()
    result = _run("ema_vs_raw.py", str(tmp_path / "run"))
    assert result["run"] == "run" and result["step"] == 6
    raw = evaluate(trainer.model, trainer.val_data, trainer.inference, class_names=trainer.class_names).miou
    assert result["raw_miou"] == pytest.approx(raw) and result["ema_miou"] == pytest.approx(trainer.evaluate().miou)
