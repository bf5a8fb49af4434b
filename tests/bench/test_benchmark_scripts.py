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
