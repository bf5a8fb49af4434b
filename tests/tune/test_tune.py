"""``segrecipes tune`` end to end on the tiny synthetic run: trials train and one is pruned, a second
invocation continues the study, the best config trains, two processes share one storage, a killed
trial is retried, and bad input ends in one line with exit code 2."""

from __future__ import annotations

import csv
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers.tiny import tiny_args, tiny_config

from segrecipes.bench.study.runs import _first_difference
from segrecipes.cli.main import main
from segrecipes.config import load_config
from segrecipes.run import build_trainer
from segrecipes.tune.space import Dimension, default_space, search_space

optuna = pytest.importorskip("optuna", reason="the tune extra (in dev) is not installed")

# a trial: 6 steps of the tiny run, evaluated at steps 2, 4 and 6, so that the pruner can judge it at 2
TRIAL = [*tiny_args("train.eval_interval=2ba", "train.loggers=[]", "train.log_images=0"), "--budget", "6ba"]
LR_ONLY = ["--space", "optimizer.lr=1e-4:1:log", "--space-only"]
WORKTREE = Path(__file__).resolve().parents[2]


def cli(*args: str) -> int | str | None:
    with pytest.raises(SystemExit) as ended:
        main(list(args))
    return ended.value.code


def trials_table(out: Path) -> list[dict[str, str]]:
    with (out / "trials.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_the_default_space_follows_the_recipes_methods() -> None:
    keys = lambda recipe: [dimension.key for dimension in default_space(load_config(recipe))]  # noqa: E731
    assert keys("baseline") == ["optimizer.lr", "optimizer.weight_decay"]
    assert keys("mild") == ["optimizer.lr", "optimizer.weight_decay", "ema.half_life"]
    assert keys("medium") == ["optimizer.lr", "optimizer.weight_decay", "ema.half_life", "sam.rho", "mixup.alpha"]


def test_space_narrows_a_default_and_adds_keys_with_units() -> None:
    space = search_space(load_config("mild"), ["optimizer.lr=0.01:0.1:log", "ema.half_life=100ba:2000ba",
                                               "train.global_batch_size=4:16"])
    by_key = {dimension.key: dimension for dimension in space}
    assert by_key["optimizer.lr"] == Dimension("optimizer.lr", 0.01, 0.1, log=True)
    assert by_key["ema.half_life"] == Dimension("ema.half_life", 100, 2000, unit="ba")
    assert by_key["ema.half_life"].override(150.0) == "ema.half_life=150ba"
    assert by_key["train.global_batch_size"].integer and "optimizer.weight_decay" in by_key


@pytest.mark.parametrize("space, message", [
    ("optimizer.lrr=0.01:0.1", "unknown key 'optimizer.lrr' (did you mean 'optimizer.lr'?)"),
    ("optimizer.lr=0.1:0.01", "low 0.1 is above high 0.01"),
    ("optimizer.lr=0:0.1:log", "a log range must lie above 0"),
    ("sam.rho=0:0.5", "sam.rho"),
    ("optimizer.lr=0.01", "expected section.key=low:high"),
    ("ema.half_life=5:50", "ema.half_life is a duration: give both bounds with a unit"),
    ("data.spec=1:2", "data.spec is not a number"),
])
def test_bad_space_is_one_line_and_exit_2(space: str, message: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("tune", *TRIAL, "--space", space, "--out", str(tmp_path / "tune")) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1, error
    assert not (tmp_path / "tune").exists()


@pytest.mark.parametrize("option, message", [
    (["--storage", "nowhere://study"], "--storage nowhere://study: cannot open it as an Optuna database"),
    (["--pruner", "fast"], "--pruner 'fast': use one of asha, hyperband, median, none"),
])
def test_bad_storage_or_pruner_is_one_line_and_exit_2(option: list[str], message: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("tune", *TRIAL, *option, "--out", str(tmp_path / "tune")) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1, error
    assert not (tmp_path / "tune").exists()


def test_tune_without_optuna_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now fails, as without the extra
    assert cli("tune", *TRIAL, "--out", str(tmp_path / "tune")) == 2
    error = capsys.readouterr().err.strip()
    assert error == "error: segrecipes tune needs Optuna: pip install 'segrecipes[tune]'"


@pytest.mark.slow
def test_tune_prunes_continues_and_its_best_config_trains(tmp_path: Path) -> None:
    out = tmp_path / "tune"
    assert cli("tune", *TRIAL, *LR_ONLY, "--trials", "3", "--seed", "0", "--out", str(out)) == 0
    first = trials_table(out)
    assert [row["state"] for row in first].count("pruned") >= 1
    assert {row["state"] for row in first} <= {"complete", "pruned"} and len(first) == 3
    pruned = next(row for row in first if row["state"] == "pruned")
    assert int(pruned["last_step"]) < 6  # stopped before its budget was spent

    assert cli("tune", *TRIAL, *LR_ONLY, "--trials", "4", "--seed", "0", "--out", str(out)) == 0
    second = trials_table(out)
    assert len(second) == 4 and second[:3] == first  # one more, the first three as they were
    for name in ("history.png", "curves.png"):
        assert (out / name).stat().st_size > 0

    best = max((row for row in second if row["state"] == "complete"), key=lambda row: float(row["value"]))
    written = yaml.safe_load((out / "best.yaml").read_text())
    assert written["optimizer"]["lr"] == pytest.approx(float(best["optimizer.lr"]), rel=1e-5)
    (out / "study.db").unlink()  # a study that does not know the trial folders here: refused before any work
    assert cli("tune", *TRIAL, *LR_ONLY, "--trials", "4", "--out", str(out)) == 2
    run = tmp_path / "best-run"
    assert cli("train", "--config", str(out / "best.yaml"), "--run-dir", str(run)) == 0
    trained = yaml.safe_load((run / "config.yaml").read_text())
    assert trained["optimizer"]["lr"] == written["optimizer"]["lr"] and trained["train"]["duration"] == "6ba"


def _tune_process(out: Path, storage: str, trials: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "segrecipes.cli.main", "tune", *TRIAL, *LR_ONLY, "--trials", str(trials),
         "--storage", storage, "--study-name", "shared", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**__import__("os").environ, "PYTHONPATH": str(WORKTREE), "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_two_processes_share_one_study(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    assert cli("tune", *TRIAL, *LR_ONLY, "--trials", "1", "--storage", storage, "--study-name", "shared",
               "--out", str(tmp_path / "a")) == 0  # the study exists before the two processes open it
    processes = [_tune_process(tmp_path / name, storage, 5) for name in ("a", "b")]
    for process in processes:
        _, error = process.communicate(timeout=600)
        assert process.returncode == 0, error[-2000:]
    trials = optuna.load_study(study_name="shared", storage=storage).get_trials()
    finished = [trial for trial in trials if trial.state.is_finished()]
    assert 5 <= len(finished) <= 6 and all(trial.state != optuna.trial.TrialState.FAIL for trial in trials)
    assert len({trial.number for trial in trials}) == len(trials)
    ran = {int(path.name.removeprefix("trial-")) for name in ("a", "b")
           for path in (tmp_path / name / "trials").iterdir()}
    assert ran == {trial.number for trial in trials}  # each trial trained once, by one of the processes
    assert any((tmp_path / "b" / "trials").iterdir())  # the second process took trials too


@pytest.mark.slow
def test_a_killed_trial_is_marked_failed_and_retried_with_its_values(tmp_path: Path) -> None:
    out = tmp_path / "tune"
    args = ["tune", *TRIAL, *LR_ONLY, "--seed", "0", "--heartbeat", "1", "--out", str(out)]
    assert cli(*args, "--trials", "1") == 0
    storage = optuna.storages.RDBStorage(f"sqlite:///{out / 'study.db'}", heartbeat_interval=1, grace_period=2)
    study = optuna.load_study(study_name="tune", storage=storage)
    study.enqueue_trial({"optimizer.lr": 0.0123})
    killed = study.ask()  # a trial that started, beat once, and whose process then died
    killed.suggest_float("optimizer.lr", 1e-4, 1, log=True)
    killed.set_user_attr("first_attempt", killed.number)
    storage.record_heartbeat(killed._trial_id)
    time.sleep(3.5)  # SQLite keeps whole seconds: only a wait past 3 s is surely over the 2 s grace period
    assert cli(*args, "--trials", "2") == 0
    rows = {int(row["trial"]): row for row in trials_table(out)}
    assert rows[killed.number]["state"] == "fail"
    retry = rows[max(rows)]
    assert float(retry["optimizer.lr"]) == pytest.approx(0.0123) and retry["state"] in ("complete", "pruned")
    assert retry["run_dir"].endswith(f"trial-{killed.number}")  # it continues the killed trial's folder


@pytest.mark.slow
def test_every_evaluation_reaches_the_hook_a_pruner_listens_on() -> None:
    seen: list[tuple[int, float]] = []
    trainer = build_trainer(tiny_config("train.duration=4ba", "train.eval_interval=2ba"), None,
                            on_evaluation=lambda step, metrics: seen.append((step, metrics.miou)))
    summary = trainer.fit()
    assert seen == [(row["step"], row["miou"]) for row in summary["history"]] and [step for step, _ in seen] == [2, 4]


def test_a_study_planned_with_lr_auto_accepts_its_runs_found_rate() -> None:
    assert _first_difference({"optimizer": {"lr": "auto"}}, {"optimizer": {"lr": 0.134}}) is None
    assert _first_difference({"optimizer": {"lr": 0.08}}, {"optimizer": {"lr": 0.134}}) is not None


@pytest.mark.slow
def test_a_closed_trainer_leaves_no_loader_workers_behind() -> None:
    """Trials and range tests drop their trainers before the process ends: their persistent workers stop
    at once (at garbage collection they would be joined one by one, seconds each, in the middle of a search)."""
    trainer = build_trainer(tiny_config("train.duration=2ba", "data.num_workers=1", "data.persistent_workers=true"),
                            None)
    trainer.fit()
    workers = multiprocessing.active_children()
    assert workers and all(worker.is_alive() for worker in workers)
    trainer.close()
    assert not any(worker.is_alive() for worker in workers)
