"""``segrecipes tune``: a pruned search over a recipe's constants on Optuna, resumable and shareable."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from segrecipes.cli.study_table import shown
from segrecipes.cli.train import run_overrides
from segrecipes.config import ConfigError, load_config
from segrecipes.tune.space import SYNTAX, search_space

if TYPE_CHECKING:  # Optuna is an extra: imported when the command runs
    import optuna

    from segrecipes.tune.study import TuneSettings


def tune_command(
    recipe: Annotated[Optional[str], typer.Option(help="Preset to start from (see `segrecipes recipes`).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config file.")] = None,
    data: Annotated[Optional[str], typer.Option(help="KIND:PATH or synthetic (as for train).")] = None,
    budget: Annotated[Optional[str], typer.Option(help="Each trial's training duration (8ep, 2000ba...; default "
                                                       "the config's).")] = None,
    trials: Annotated[int, typer.Option(help="Finished trials the study should hold (all processes together); "
                                             "the same command continues it, a larger number extends it.", min=1)]
        = 20,
    space: Annotated[Optional[list[str]], typer.Option(help=f"{SYNTAX}: search this key in this range instead of "
                                                            "its default, or in addition (repeatable).")] = None,
    space_only: Annotated[bool, typer.Option("--space-only", help="Search only the --space keys.")] = False,
    pruner: Annotated[str, typer.Option(help="asha (successive halving), hyperband, median or none.")] = "asha",
    storage: Annotated[Optional[str], typer.Option(help="Optuna database URL shared by several processes or "
                                                        "machines (default: sqlite in --out).")] = None,
    study_name: Annotated[Optional[str], typer.Option(help="The study's name in the storage (default: the "
                                                           "--out folder's name).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="The sampler's seed (leave it out when processes share a "
                                                     "study, or they propose the same values).")] = None,
    heartbeat: Annotated[int, typer.Option(help="Seconds between a running trial's heartbeats; after twice "
                                                "that without one it counts as killed and is retried.", min=1)]
        = 60,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="section.key=value override (repeatable).")] = None,
    out: Annotated[Path, typer.Option(help="Tune folder: the study (sqlite), the trials' run folders, the "
                                           "table, best.yaml and the plots.")] = Path("runs/tune"),
) -> None:
    """Search the recipe's constants with trials that are real training runs, stopping bad ones early;
    prints the trials and writes the best trial's config for `segrecipes train --config`."""
    try:
        import optuna  # noqa: F401  (the extra: checked before any work)
    except ImportError:
        raise ConfigError("segrecipes tune needs Optuna: pip install 'segrecipes[tune]'") from None
    from segrecipes.tune.report import write_tune_report
    from segrecipes.tune.study import PRUNERS, TuneSettings, check_trial_folders, finished_trials, open_study, \
        run_trials

    if pruner not in PRUNERS:
        raise ConfigError(f"--pruner {pruner!r}: use one of {', '.join(PRUNERS)}")
    overrides = run_overrides(data, budget, None, list(set_ or []))
    base = load_config(recipe, config, overrides)
    settings = TuneSettings(recipe, str(config) if config else None, tuple(overrides),
                            tuple(search_space(base, list(space or []), space_only)), pruner)
    for dimension in settings.space:  # every corner of the space is a valid config before anything trains
        settings.trial_config({other.key: getattr(other, "high" if other is dimension else "low")
                               for other in settings.space})
    url = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    if storage is None:
        out.mkdir(parents=True, exist_ok=True)  # the default storage's folder
    study = open_study(settings, url, study_name or out.resolve().name, seed, heartbeat)
    check_trial_folders(study, out)
    out.mkdir(parents=True, exist_ok=True)
    console = Console()
    metric = base.train.best_metric
    done = finished_trials(study)
    console.print(f"study {study.study_name!r} in {url}: {done} finished trial{'s' if done != 1 else ''}, "
                  f"{max(0, trials - done)} to go; searching {', '.join(str(d) for d in settings.space)}",
                  soft_wrap=True)

    def report(trial: optuna.trial.FrozenTrial) -> None:
        state, last = trial.state.name.lower(), max(trial.intermediate_values, default=None)
        score = f"{metric} {trial.value:.2f}" if trial.value is not None else "no score"
        console.print(f"trial {trial.number} {state}{f' at step {last}' if state == 'pruned' else ''}: {score}  "
                      f"{_values(trial.params)}", soft_wrap=True)
        write_tune_report(study, settings, out, metric)

    run_trials(study, settings, out, trials, on_trial=report)
    paths = write_tune_report(study, settings, out, metric)
    _print_trials(console, study, settings, metric)
    console.print(f"wrote {', '.join(str(path) for path in paths.values())}", soft_wrap=True)


def _print_trials(console: Console, study: optuna.Study, settings: TuneSettings, metric: str) -> None:
    from segrecipes.tune.report import best_trial, trial_rows

    rows = trial_rows(study, settings, Path("."))
    keys = [dimension.key for dimension in settings.space]
    table = Table("trial", "state", metric, title="trials")
    for key in [*keys, "last step"]:
        table.add_column(key, overflow="fold")
    for row in rows:
        table.add_row(str(row["trial"]), row["state"] + (" (diverged)" if row["diverged"] else ""),
                      shown(row["value"]), *(f"{row[key]:.4g}" if row[key] is not None else "-" for key in keys),
                      str(row["last_step"] if row["last_step"] is not None else "-"))
    console.print(table)
    best = best_trial(study)
    if best is not None:
        console.print(f"best: trial {best.number}, {metric} {best.value:.2f}  {_values(best.params)}", soft_wrap=True)


def _values(params: dict[str, Any]) -> str:
    """A trial's values as ``key=value`` pairs, to three significant digits."""
    return "  ".join(f"{key}={value:.3g}" for key, value in params.items())
