"""The search itself, on Optuna: each trial a real run through ``build_trainer``, its evaluations
reported to a pruner, the study kept in Optuna's storage so that it can be continued and shared.

Storage is an Optuna database URL; the default is a SQLite file in the tune folder. Every process that
opens the same study with the same settings takes part in it (start ``segrecipes tune`` on several
machines with one ``--storage``). The storage keeps a heartbeat of each running trial: a trial whose
process was killed is marked failed by the next process that starts a trial, and Optuna's
``RetryHeartbeatStaleTrialCallback`` queues it again with the same values; its run folder (named after the
first attempt) then continues from its newest checkpoint. ``--trials N`` is the study's total of
finished (complete or pruned) trials: the same command again finishes an interrupted study, a larger
N extends it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState
from sqlalchemy.exc import SQLAlchemyError

from segrecipes.config import ConfigError, RunConfig, load_config
from segrecipes.engine.interrupt import TrainingDiverged
from segrecipes.errors import one_line
from segrecipes.evaluation.metrics import SegMetrics
from segrecipes.run import build_trainer, run_clock, training_data
from segrecipes.tune.space import Dimension

PRUNERS = ("asha", "hyperband", "median", "none")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
TRIALS_DIR = "trials"
FIRST_ATTEMPT = "first_attempt"  # a trial's user attribute: the number of its first attempt (its run folder)
SETTINGS_ATTR = "segrecipes"  # the study's user attribute holding the settings it was started with


@dataclass(frozen=True)
class TuneSettings:
    """What every trial of a study shares: the run (``recipe``, ``config_file``, ``overrides`` with the
    data and the per-trial budget) and the space; a study is continued only with the same."""

    recipe: str | None
    config_file: str | None
    overrides: tuple[str, ...]
    space: tuple[Dimension, ...]
    pruner: str = "asha"

    def trial_config(self, values: dict[str, float | int]) -> RunConfig:
        """The config of a trial taking ``values`` (key -> value) on top of the shared run."""
        sets = [dimension.override(values[dimension.key]) for dimension in self.space]
        return load_config(self.recipe, self.config_file, [*self.overrides, *sets])

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "space": [str(dimension) for dimension in self.space],
                "overrides": list(self.overrides)}


def open_study(settings: TuneSettings, storage_url: str, name: str, seed: int | None = None,
               heartbeat_s: int = 60) -> optuna.Study:
    """The study ``name`` in ``storage_url``, created or continued; refused when it was started with other
    settings. ``heartbeat_s``: how often a running trial says it is alive (twice that without a word and
    it counts as killed)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the command prints each trial itself
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            storage = RDBStorage(storage_url, heartbeat_interval=heartbeat_s, grace_period=2 * heartbeat_s,
                                 heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                                     max_retry=2, inherit_intermediate_values=True))
        except (SQLAlchemyError, ImportError, ValueError) as error:  # a bad URL, a missing driver, no server
            raise ConfigError(f"--storage {storage_url}: cannot open it as an Optuna database "
                              f"({type(error).__name__}: {one_line(error)})") from None
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize", load_if_exists=True,
                                    sampler=optuna.samplers.TPESampler(seed=seed), pruner=_pruner(settings))
    saved = study.user_attrs.get(SETTINGS_ATTR)
    if saved is None:
        study.set_user_attr(SETTINGS_ATTR, settings.record())
    elif saved != settings.record():
        different = next(key for key, value in settings.record().items() if saved.get(key) != value)
        raise ConfigError(f"study {name!r} in {storage_url} was started with another {different} "
                          f"({saved.get(different)!r}); give the same options, or another --study-name or --out")
    return study


def _pruner(settings: TuneSettings) -> optuna.pruners.BasePruner:
    """The pruner, counting in steps from the first evaluation (a trial is first judged there)."""
    config = settings.trial_config({dimension.key: dimension.low for dimension in settings.space})
    first = _first_evaluation_step(config)
    if settings.pruner == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=3)
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=first, reduction_factor=3)
    if settings.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=first - 1)
    return optuna.pruners.NopPruner()


def _first_evaluation_step(config: RunConfig) -> int:
    interval = config.train.eval_interval
    if interval is None:
        raise ConfigError("tune: the trials must evaluate during training for the pruner: set "
                          "train.eval_interval (e.g. 1ep or 0.25dur)")
    steps = run_clock(config, len(training_data(config))).steps(interval)
    if steps is None:
        raise ConfigError(f"tune: train.eval_interval {interval} is wall-clock time; give it in ba, ep, sp or dur "
                          "so that every trial is judged at the same steps")
    return steps


def check_trial_folders(study: optuna.Study, out_dir: Path) -> None:
    """Refuse a tune folder holding trial runs that ``study`` does not know (its storage was replaced, or
    another study ran here): a trial would otherwise continue another's checkpoint."""
    known = {f"trial-{trial.number}" for trial in study.get_trials(deepcopy=False)}
    foreign = sorted(folder for folder in (out_dir / TRIALS_DIR).glob("trial-*") if folder.name not in known)
    if foreign:
        raise ConfigError(f"{foreign[0]}: a trial that study {study.study_name!r} does not hold (was its storage "
                          "replaced?); use a new --out folder or the study's own --storage")


def finished_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def run_trials(study: optuna.Study, settings: TuneSettings, out_dir: Path, trials: int,
               on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None) -> None:
    """Run trials until ``study`` holds ``trials`` finished ones (other processes' included)."""
    remaining = trials - finished_trials(study)
    if remaining <= 0:
        return
    callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = [
        MaxTrialsCallback(trials, states=FINISHED)]
    if on_trial is not None:
        callbacks.append(lambda _, trial: on_trial(trial))
    study.optimize(lambda trial: _objective(trial, settings, out_dir), n_trials=remaining, callbacks=callbacks,
                   catch=())


def trial_dir(out_dir: Path, trial: optuna.Trial | optuna.trial.FrozenTrial) -> Path:
    """A trial's run folder, named after its first attempt (a retry inherits the attribute, and continues
    the folder's checkpoint)."""
    return out_dir / TRIALS_DIR / f"trial-{trial.user_attrs.get(FIRST_ATTEMPT, trial.number)}"


def _objective(trial: optuna.Trial, settings: TuneSettings, out_dir: Path) -> float:
    """Train one trial; its score is the best value of ``train.best_metric`` over its evaluations."""
    values = {dimension.key: dimension.suggest(trial) for dimension in settings.space}
    config = settings.trial_config(values)
    trial.set_user_attr(FIRST_ATTEMPT, trial.user_attrs.get(FIRST_ATTEMPT, trial.number))
    folder = trial_dir(out_dir, trial)
    metric = config.train.best_metric

    def report(step: int, metrics: SegMetrics) -> None:
        trial.report(metrics.value(metric), step)
        if not trainer.clock.finished and trial.should_prune():  # the last evaluation completes the trial
            raise optuna.TrialPruned(f"step {step}: {metric} {metrics.value(metric):.2f}")

    trainer = build_trainer(config, folder, resume="auto", on_evaluation=report)
    try:
        summary = trainer.fit()
    except TrainingDiverged as diverged:  # a rate too high for the run: as bad as it gets, and no failure
        trial.set_user_attr("diverged", str(diverged))
        raise optuna.TrialPruned("diverged") from None
    finally:
        trainer.close()
    if summary["best_value"] is None:
        raise optuna.TrialPruned(f"{metric} was never defined")
    return float(summary["best_value"])

