"""``segrecipes train``: start a run from a recipe, a YAML file and overrides, or resume one."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from segrecipes.config import ConfigError, RunConfig, build_config, load_config, merge_dicts, parse_override
from segrecipes.engine.checkpoint import checkpoint_candidates, latest_checkpoint
from segrecipes.run import build_trainer


def _overrides(data: str | None, duration: str | None, loss: str | None, sets: list[str]) -> list[str]:
    shortcuts = [f"data.spec={data}"] if data else []
    shortcuts += [f"train.duration={duration}"] if duration else []
    shortcuts += [f"loss.name={loss}"] if loss else []
    return shortcuts + sets


def _resumed_config(run_dir: Path, overrides: list[str]) -> tuple[RunConfig, dict]:
    """The run's saved config with ``overrides`` on top, and its newest checkpoint. A run extended to a
    new duration keeps its ``dur`` constants (EMA half-life, intervals) in the batches they meant."""
    _, state = latest_checkpoint(run_dir)
    saved = data = state["config"]
    for override in overrides:
        data = merge_dicts(data, parse_override(override))
    config = build_config(data, f"{run_dir}/checkpoints")
    before = build_config(saved, f"{run_dir}/checkpoints").train
    if config.train.duration != before.duration and config.train.dur_base is None:
        config.train.dur_base = before.duration
    return config, state


def train_command(
    recipe: Annotated[Optional[str], typer.Option(help="Preset to start from (see `segrecipes recipes`).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config file.")] = None,
    data: Annotated[Optional[str], typer.Option(help="ade20k:PATH | camvid:PATH | folder:PATH | synthetic")] = None,
    duration: Annotated[Optional[str], typer.Option(help="128ep, 1000ba, 39min, 2h ...")] = None,
    methods: Annotated[Optional[str], typer.Option(help="Comma-separated methods to enable: ema,channels_last,mixup,sam")]
        = None,
    loss: Annotated[Optional[str], typer.Option(help="ce | dice_ce (0.375 CE + 1.125 Dice, the recipes' loss)")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="section.key=value override (repeatable).")] = None,
    run_dir: Annotated[Optional[Path], typer.Option(help="Run folder (default runs/<recipe>-<time>).")] = None,
    resume: Annotated[Optional[str], typer.Option(
        help="Continue the run in this folder (--duration extends it); 'auto' resumes --run-dir if it has a checkpoint.")] = None,
) -> None:
    """Train a segmentation model; prints the final validation mIoU."""
    console = Console()
    overrides = _overrides(data, duration, loss, list(set_ or []))
    automatic = resume == "auto"  # the same command line starts a run or continues it (torchrun restarts)
    if automatic:
        if run_dir is None:
            raise ConfigError("--resume auto needs --run-dir (the folder to resume if it holds a checkpoint)")
        resume = str(run_dir) if checkpoint_candidates(run_dir) else None
    if resume is not None:
        if (recipe or config or methods) and not automatic:
            raise ConfigError("--resume takes the run's own config; only --duration, --data and --set may change it")
        folder = Path(resume)
        cfg, state = _resumed_config(folder, overrides)
    else:
        cfg = load_config(recipe, config, overrides, [m.strip() for m in (methods or "").split(",") if m.strip()])
        state = None
        folder = run_dir or Path("runs") / f"{cfg.recipe.name or 'custom'}-{time.strftime('%Y%m%d-%H%M%S')}"
        if checkpoint_candidates(folder):
            raise ConfigError(f"--run-dir {folder}: already holds checkpoints; use --resume {folder} or another folder")
    trainer = build_trainer(cfg, folder, resume=state)
    if trainer.dist.is_main:
        console.print(f"run folder: {folder}  ({', '.join(cfg.enabled_methods()) or 'no methods'}; "
                      f"{cfg.model.name} {cfg.model.backbone}; data {cfg.data.spec})")
    summary = trainer.fit()
    if trainer.dist.is_main:
        start = summary["history"][0] if summary["history"] and summary["history"][0]["step"] == 0 else None
        if start is not None:
            console.print(f"untrained model: val mIoU {start['miou']:.2f}")
        console.print(
            f"final val mIoU {summary['miou']:.2f}  pixel acc {summary['pixel_acc']:.2f}  "
            f"({summary['step']} steps, {summary['elapsed_s']:.0f} s, {summary['train_images_per_s']:.1f} img/s)"
        )
