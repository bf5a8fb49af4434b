"""``segrecipes train``: start a run from a recipe, a YAML file and overrides, or resume one."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from segrecipes.config import ConfigError, load_config
from segrecipes.engine.distributed import node_layout
from segrecipes.engine.remote import is_url, open_mirror
from segrecipes.run import build_trainer, holds_checkpoint, resume_point, resumed_config


def run_overrides(data: str | None, duration: str | None, loss: str | None, sets: list[str]) -> list[str]:
    shortcuts = [f"data.spec={data}"] if data else []
    shortcuts += [f"train.duration={duration}"] if duration else []
    shortcuts += [f"loss.name={loss}"] if loss else []
    return shortcuts + sets


def train_command(
    recipe: Annotated[Optional[str], typer.Option(help="Preset to start from (see `segrecipes recipes`).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config file.")] = None,
    data: Annotated[Optional[str], typer.Option(
        help="KIND:PATH (ade20k, camvid, cityscapes, coco, cvat, folder, labelstudio, voc) or synthetic")] = None,
    duration: Annotated[Optional[str], typer.Option(help="128ep, 1000ba, 39min, 2h ...")] = None,
    methods: Annotated[Optional[str], typer.Option(help="Comma-separated methods to enable: ema,channels_last,mixup,sam")]
        = None,
    loss: Annotated[Optional[str], typer.Option(help="ce | dice_ce (0.375 CE + 1.125 Dice, the recipes' loss)")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="section.key=value override (repeatable).")] = None,
    run_dir: Annotated[Optional[str], typer.Option(
        help="Run folder, local or on object storage: s3://bucket/run (default runs/<recipe>-<time>).")] = None,
    resume: Annotated[Optional[str], typer.Option(
        help="Continue the run in this folder (--duration extends it); 'auto' resumes --run-dir if it has a checkpoint.")] = None,
) -> None:
    """Train a segmentation model; prints the final validation mIoU."""
    console = Console()
    overrides = run_overrides(data, duration, loss, list(set_ or []))
    automatic = resume == "auto"  # the same command line starts a run or continues it (torchrun restarts)
    if automatic and run_dir is None:
        raise ConfigError("--resume auto needs --run-dir (the folder to resume if it holds a checkpoint)")
    rank = int(os.environ.get("RANK", "0"))  # torchrun's; the process group starts later, in build_trainer
    location = run_dir if resume is None or automatic else resume
    # a folder on object storage: a missing package or an unreachable bucket ends the run here, before any work
    mirror = open_mirror(location, rank) if location is not None and is_url(location) else None
    if resume is not None and not automatic and (recipe or config or methods):
        raise ConfigError("--resume takes the run's own config; only --duration, --data and --set may change it")
    point = None
    if resume is not None:
        folder = mirror.local if mirror is not None else Path(location)
        point = resume_point(folder, overrides, mirror, rank) if automatic else resumed_config(folder, overrides,
                                                                                               mirror, rank)
    if point is not None:
        cfg, state = point
    else:
        cfg = load_config(recipe, config, overrides, [m.strip() for m in (methods or "").split(",") if m.strip()])
        state = None
        folder = mirror.local if mirror is not None else Path(run_dir) if run_dir else (
            Path("runs") / f"{cfg.recipe.name or 'custom'}-{time.strftime('%Y%m%d-%H%M%S')}")
        if holds_checkpoint(folder, mirror):
            shown = run_dir or folder
            raise ConfigError(f"--run-dir {shown}: already holds checkpoints; use --resume {shown} or another folder")
    trainer = build_trainer(cfg, folder, resume=state, mirror=mirror)
    if trainer.dist.is_main:
        shown = f"{mirror.url} (staged in {folder})" if mirror is not None else folder
        console.print(f"run folder: {shown}  ({', '.join(cfg.enabled_methods()) or 'no methods'}; "
                      f"{cfg.model.name} {cfg.model.backbone}; data {cfg.data.spec})")
        nodes, per_node = node_layout(trainer.dist.world_size)
        probed = cfg.train.device_microbatch_size == "auto" and trainer.device.type == "cuda"
        if cfg.optimizer.lr == "auto":
            found = (trainer.config or {})["optimizer"]["lr"]
            console.print(f"optimizer.lr auto: {found:g}" + (" (the resumed run's)" if state is not None else
                                                              f" (the range test's suggestion, {folder}/lr_find.json)"))
        console.print(f"world size {trainer.dist.world_size} ({nodes} node{'s' if nodes > 1 else ''} x {per_node}), "
                      f"{trainer.batch_per_rank} images per rank, microbatch "
                      f"{'auto (found before the first step)' if probed else trainer.microbatch}")
    summary = trainer.fit()
    if trainer.dist.is_main:
        start = summary["history"][0] if summary["history"] and summary["history"][0]["step"] == 0 else None
        if start is not None:
            console.print(f"untrained model: val mIoU {start['miou']:.2f}")
        console.print(
            f"final val mIoU {summary['miou']:.2f}  pixel acc {summary['pixel_acc']:.2f}  "
            f"({summary['step']} steps, {summary['elapsed_s']:.0f} s, {summary['train_images_per_s']:.1f} img/s)"
        )
