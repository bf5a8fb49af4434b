"""``segrecipes lr-find``: the learning-rate range test of a run, its suggestion, curve and plot."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from segrecipes.cache import write_json
from segrecipes.cli.train import run_overrides
from segrecipes.config import load_config
from segrecipes.optim.lr_find import SUGGESTION_RULE, RangeTest
from segrecipes.run import lr_range_test
from segrecipes.tune.lr_plot import write_lr_plot

DEFAULTS = RangeTest()


def lr_find_command(
    recipe: Annotated[Optional[str], typer.Option(help="Preset to start from (see `segrecipes recipes`).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config file.")] = None,
    data: Annotated[Optional[str], typer.Option(help="KIND:PATH or synthetic (as for train).")] = None,
    methods: Annotated[Optional[str], typer.Option(help="Comma-separated methods to enable: ema,channels_last,mixup,sam")]
        = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="section.key=value override (repeatable).")] = None,
    steps: Annotated[int, typer.Option(help="Training steps of the test (it stops earlier when the loss diverges).")]
        = DEFAULTS.steps,
    start_lr: Annotated[float, typer.Option(help="Learning rate of the first step.")] = DEFAULTS.start_lr,
    end_lr: Annotated[float, typer.Option(help="Learning rate of the last step (rates grow geometrically).")]
        = DEFAULTS.end_lr,
    out: Annotated[Optional[Path], typer.Option(help="Folder for lr_find.json and lr_find.png (default "
                                                     "runs/lr-find-<time>).")] = None,
) -> None:
    """Train a few hundred steps of the run (its model, data, methods and step) with a learning rate that
    grows every step, and suggest one: a tenth of the rate at the smoothed loss's minimum."""
    test = RangeTest(start_lr=start_lr, end_lr=end_lr, steps=steps)
    cfg = load_config(recipe, config, run_overrides(data, None, None, list(set_ or [])),
                      [m.strip() for m in (methods or "").split(",") if m.strip()])
    folder = out or Path("runs") / f"lr-find-{time.strftime('%Y%m%d-%H%M%S')}"
    console = Console()

    def progress(step: int, lr: float, loss: float) -> None:
        if step % 20 == 0:
            console.print(f"step {step}: lr {lr:.3g} loss {loss:.4f}")

    curve, suggestion = lr_range_test(cfg, test=test, progress=progress)
    record = curve.to_dict()
    write_json(folder / "lr_find.json", record)
    write_lr_plot(curve, folder / "lr_find.png", f"{cfg.recipe.name or 'custom'} on {cfg.data.spec}, batch "
                                                 f"{cfg.train.global_batch_size}")
    ended = "the loss diverged" if curve.stopped_early else "the last rate was reached"
    console.print(f"{len(curve.lrs)} steps ({ended}); lowest smoothed loss at lr {record['lr_at_min_loss']:.3g}")
    console.print(f"suggested optimizer.lr {suggestion:g}  ({SUGGESTION_RULE})")
    console.print(f"wrote {folder / 'lr_find.json'}, {folder / 'lr_find.png'}")
