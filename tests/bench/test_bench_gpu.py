"""``segrecipes bench gpu``: the GPU lease script, run here as ``--smoke`` (the same code on a CPU at tiny
sizes) so that it cannot rot, and what keeps one failure from hiding the rest."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
import torch

from segrecipes.bench.gpu import checks as checks_module
from segrecipes.bench.gpu import run as run_module
from segrecipes.bench.gpu import speed as speed_module
from segrecipes.bench.gpu.checks import CheckResult, Finding, run_checks
from segrecipes.bench.gpu.report import GpuRecord
from segrecipes.bench.gpu.speed import CELLS, SKIPPED_BUDGET, TimeBudget, run_sweep
from segrecipes.cli import bench as bench_cli
from segrecipes.cli.main import main

# what a CPU cannot check, and says so
NOT_APPLICABLE_ON_CPU = {"host syncs per step"}


@pytest.mark.slow
def test_the_smoke_run_passes_every_check_it_can_and_says_why_for_the_rest(tmp_path) -> None:
    out = tmp_path / "gpu-smoke"
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "gpu", "--smoke", "--out", str(out)])
    assert exit_info.value.code == 0
    record = json.loads((out / "gpu_check.json").read_text())
    assert record["smoke"] and record["finished"] and record["device"].startswith("cpu")

    checks = {check["name"]: check for check in record["correctness"]}
    assert list(checks) == [name for name, _ in checks_module.CHECKS]
    for name, check in checks.items():
        assert check["error"] is None, f"{name}: {check['error']}"
        if name in NOT_APPLICABLE_ON_CPU:
            assert check["passed"] is None and check["reason"].startswith("not applicable on CPU"), name
        else:
            assert check["passed"] is True, f"{name}: {check}"
    # on a CPU the engine trains fp32: the overflow check takes the fp32 skip path and restores everything
    overflow = checks["fp16 overflow skipped"]["details"]
    assert overflow["autocast"] == "float32" and not overflow["grad_scaler"]
    assert overflow["skipped"] and overflow["tensors_changed"] == [] and overflow["tensors_compared"] > 100
    assert checks["out of memory -> smaller microbatch"]["details"]["microbatch"] == 2
    assert checks["DDP, one rank"]["details"]["backend"] == "gloo"
    assert checks["host syncs per step"]["details"]["finite"]  # the steps ran all the same

    cells = {cell["name"]: cell for cell in record["throughput"]}
    assert list(cells) == [cell.name for cell in CELLS]
    for name, cell in cells.items():
        if cell["cell"]["compile"]:
            assert cell["status"] == "skipped: DeepLabv3+ takes minutes to compile on a CPU (the checks compile a " \
                                     "small net)", name
        else:
            assert cell["status"] == "measured" and cell["report"]["images_per_s"] > 0, f"{name}: {cell}"
    assert cells["mild largest"]["batch"] == 4  # the probe's cap: a CPU never runs out of GPU memory
    assert record["goal"]["mild_images_per_s"] > 0 and record["goal"]["target"] == 250

    assert [row["workers"] for row in record["data"]] == [0, 1]
    assert all(row["images_per_s"] > 0 and row["feeds_gpu"] is not None for row in record["data"])
    assert record["data_files"]["jpeg_kb_mean"] > 0

    markdown = (out / "gpu_check.md").read_text()
    for heading in ("## GPU check: cpu", "### correctness", "### training throughput", "### data pipeline"):
        assert heading in markdown


@pytest.mark.parametrize("args, message", [
    (["--out", "{file}"], "exists and is not a folder"),
    (["--out", "{folder}", "--budget-s", "0"], "--budget-s must be positive"),
])
def test_bad_arguments_are_a_one_line_error(tmp_path, capsys, args, message) -> None:
    file = tmp_path / "results.json"
    file.write_text("{}")
    paths = {"file": str(file), "folder": str(tmp_path / "out")}
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "gpu", "--smoke", *(arg.format(**paths) for arg in args)])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert error.startswith("error: ") and error.count("\n") == 1 and message in error


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: without --smoke this would run in full")
def test_without_a_gpu_only_the_smoke_run_is_possible(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "gpu", "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "--smoke" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_check_that_raises_is_recorded_and_the_next_one_still_runs(monkeypatch) -> None:
    def broken(sizes):
        raise RuntimeError("CUDA error: an illegal memory access\nsecond line")

    monkeypatch.setattr(checks_module, "CHECKS", (("broken", broken), ("fine", lambda sizes: Finding(True, {"x": 1}))))
    results = list(run_checks(run_module.SMOKE.checks))
    assert [(result.name, result.status) for result in results] == [("broken", "error"), ("fine", "passed")]
    assert results[0].passed is False and results[0].error == "RuntimeError: CUDA error: an illegal memory access"


def test_a_failed_check_makes_the_exit_code_1(monkeypatch, tmp_path) -> None:
    failed = GpuRecord("cpu", torch.__version__, "now", True, 1.0, [CheckResult("broken", False)])
    monkeypatch.setattr(bench_cli, "run_gpu", lambda *args: failed)
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "gpu", "--smoke", "--out", str(tmp_path)])
    assert exit_info.value.code == 1


def test_once_the_budget_is_spent_every_cell_left_is_recorded_as_skipped() -> None:
    results = list(run_sweep(run_module.SMOKE.sweep, TimeBudget(1.0, time.perf_counter() - 2.0)))
    assert [result.cell for result in results] == list(CELLS)
    for result in results:
        expected = f"skipped: {run_module.SMOKE.sweep.no_compile}" if result.cell.compile else SKIPPED_BUDGET
        assert result.status == expected and result.report == {}


def test_a_cell_that_fails_fast_does_not_lower_the_estimate_for_the_next(monkeypatch) -> None:
    """A compiled cell that errors after a second must not make the next compiled cell look like a
    second's work: that one would then start late and run past the lease."""
    def measure(sizes, cell):
        if cell.compile:
            time.sleep(1.0)
            raise RuntimeError("inductor failed")
        return speed_module.CellResult(cell, "measured")

    monkeypatch.setattr(speed_module, "measure_cell", measure)
    monkeypatch.setattr(speed_module, "release", lambda device: None)
    sizes = dataclasses.replace(run_module.SMOKE.sweep, no_compile=None, eager_s=0.0, compiled_s=30.0)
    compiled = [result for result in run_sweep(sizes, TimeBudget(30.5, time.perf_counter())) if result.cell.compile]
    assert [result.status for result in compiled] == ["error", SKIPPED_BUDGET]
