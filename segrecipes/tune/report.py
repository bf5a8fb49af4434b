"""What a search leaves in the tune folder: the trials table, the best trial's config file and the plots
(Optuna's own: the history, the parameters' importance, every trial's evaluations with the pruned ones
ending early)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from segrecipes.cache import write_csv, write_text_atomic
from segrecipes.config import merge_dicts, moved_keys, parse_override
from segrecipes.tune.study import TuneSettings, trial_dir

BEST_CONFIG = "best.yaml"
TRIALS_TABLE = "trials.csv"
IMPORTANCE_TRIALS = 3  # complete trials before the parameters' importance means anything
PLOTS = {"history.png": "plot_optimization_history", "importance.png": "plot_param_importances",
         "curves.png": "plot_intermediate_values"}


def trial_rows(study: optuna.Study, settings: TuneSettings, out_dir: Path) -> list[dict[str, Any]]:
    """One row per trial: its state, score, values, the last step it reached and its run folder."""
    keys = [dimension.key for dimension in settings.space]
    rows = []
    for trial in study.get_trials(deepcopy=False):
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() \
            if trial.datetime_complete and trial.datetime_start else None
        rows.append({"trial": trial.number, "state": trial.state.name.lower(), "value": trial.value,
                     **{key: trial.params.get(key) for key in keys},
                     "last_step": max(trial.intermediate_values, default=None),
                     "seconds": seconds, "diverged": "diverged" in trial.user_attrs,
                     "run_dir": str(trial_dir(out_dir, trial))})
    return rows


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The complete trial of the highest score, None before one completes."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(complete, key=lambda trial: trial.value) if complete else None


def best_config(settings: TuneSettings, trial: FrozenTrial) -> dict[str, Any]:
    """The best trial's overrides as config sections: the config file of the search (if any), its
    ``--data``/``--set``/budget overrides and the trial's values, for ``segrecipes train --config``."""
    sections: dict[str, Any] = moved_keys(yaml.safe_load(Path(settings.config_file).read_text()) or {}) \
        if settings.config_file else {}
    for override in [*settings.overrides, *(dimension.override(trial.params[dimension.key])
                                            for dimension in settings.space)]:
        sections = merge_dicts(sections, moved_keys(parse_override(override)))
    return sections


def write_tune_report(study: optuna.Study, settings: TuneSettings, out_dir: Path, metric: str) -> dict[str, Path]:
    """``trials.csv``, ``best.yaml`` (once a trial completed) and the plots Optuna can draw so far
    (the importance from :data:`IMPORTANCE_TRIALS` complete trials on); returns what was written, by name."""
    rows = trial_rows(study, settings, out_dir)
    written = {"trials": out_dir / TRIALS_TABLE}
    if rows:
        write_csv(written["trials"], [list(rows[0]), *([row[key] for key in rows[0]] for row in rows)])
    best = best_trial(study)
    if best is not None:
        recipe = f"--recipe {settings.recipe} " if settings.recipe else ""
        header = (f"# segrecipes tune: the best of {len(rows)} trials (trial {best.number}, {metric} "
                  f"{best.value:.2f}); train it with:\n#   segrecipes train {recipe}--config {out_dir / BEST_CONFIG}\n"
                  "# (train.duration is the search's per-trial budget: --duration changes it)\n")
        written["best"] = out_dir / BEST_CONFIG
        write_text_atomic(written["best"], header + yaml.safe_dump(best_config(settings, best), sort_keys=False))
    written.update(_plots(study, out_dir))
    return written


def _plots(study: optuna.Study, out_dir: Path) -> dict[str, Path]:
    import matplotlib.pyplot as plt  # Optuna's plots draw with pyplot; imported here: it is slow to import
    from optuna.visualization import matplotlib as plots

    written = {}
    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    for name, function in PLOTS.items():
        if name == "importance.png" and complete < IMPORTANCE_TRIALS:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "experimental" and "too few trials" warnings
            try:
                axes = getattr(plots, function)(study)
            except (ValueError, RuntimeError):  # a plot Optuna cannot draw from these trials yet
                continue
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        figure.savefig(out_dir / name, dpi=110)
        plt.close(figure)
        written[name.removesuffix(".png")] = out_dir / name
    return written
