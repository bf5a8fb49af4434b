"""``segrecipes eval``: score a trained run or checkpoint on a dataset, the way the field does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer
from rich.console import Console

from segrecipes.config import ConfigError, EvalConfig, build_config
from segrecipes.data.spec import DataError, build_datasets
from segrecipes.engine.distributed import init_distributed
from segrecipes.engine.trained_model import load_trained_model
from segrecipes.engine.trainer import amp_dtype_for
from segrecipes.evaluation.evaluate import evaluate
from segrecipes.evaluation.metrics import format_table


def _scales(text: str | None) -> tuple[float, ...]:
    if text is None:
        return EvalConfig().scales
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"--scales {text!r}: expected comma-separated numbers such as 0.5,1.0,1.5") from None


def eval_command(
    checkpoint: Annotated[Path, typer.Option(help="Run folder or checkpoint file.")],
    data: Annotated[Optional[str], typer.Option(help="Dataset spec (default: the run's own).")] = None,
    protocol: Annotated[str, typer.Option(help="reference (resize to eval size) | standard (score at original size)")] = "reference",
    tta: Annotated[str, typer.Option(help="none | flip | ms-flip")] = "none",
    scales: Annotated[Optional[str], typer.Option(help="ms-flip scales, e.g. 0.5,0.75,1.0,1.25,1.5,1.75")] = None,
    mode: Annotated[str, typer.Option(help="whole | slide")] = "whole",
    crop_size: Annotated[Optional[int], typer.Option(help="Sliding-window crop (default: the run's crop size).")] = None,
    stride: Annotated[Optional[int], typer.Option(help="Sliding-window stride (default: 2/3 of the crop).")] = None,
    eval_size: Annotated[Optional[int], typer.Option(help="Protocol size (default: the run's eval size).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass where sizes allow.")] = 8,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    json_out: Annotated[bool, typer.Option("--json", help="Print the full metrics as JSON.")] = False,
) -> None:
    """Evaluate a checkpoint: mIoU, pixel accuracy, per-class IoU, ADE20k score."""
    settings = build_config({"eval": {"protocol": protocol, "tta": tta, "mode": mode}}, "eval options").eval
    dist = init_distributed(device)
    trained = load_trained_model(checkpoint, dist.device)
    cfg = trained.config
    data_cfg = cfg.data.model_copy(update={"spec": data}) if data else cfg.data
    bundle = build_datasets(data_cfg, splits=("val",))
    if bundle.num_classes != trained.num_classes:
        raise DataError(f"{data_cfg.spec}: has {bundle.num_classes} classes but the checkpoint "
                        f"{trained.source} was trained for {trained.num_classes}")
    crop = crop_size or cfg.data.crop_size
    metrics = evaluate(
        trained.model, bundle.val_raw, protocol=settings.protocol, eval_size=eval_size or cfg.data.eval_size,
        tta=settings.tta, scales=_scales(scales), mode=settings.mode, crop_size=crop,
        stride=stride or max(1, crop * 2 // 3), batch_size=batch_size, device=dist.device,
        amp_dtype=amp_dtype_for(cfg.train.precision, dist.device), progress=not json_out and dist.is_main,
    )
    if not dist.is_main:
        return
    if json_out:
        print(json.dumps({"checkpoint": str(trained.source), "data": data_cfg.spec, "protocol": protocol,
                          "tta": tta, "mode": mode, **metrics.to_dict(),
                          "class_names": bundle.class_names}, indent=2))
        return
    Console().print(format_table(metrics, bundle.class_names))
