"""``segrecipes eval``: score a trained run or checkpoint on a dataset, the way the field does."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from segrecipes.cli import inference_flags as flags
from segrecipes.deploy.trained_model import load_trained_model, scoring_data
from segrecipes.engine.distributed import init_distributed
from segrecipes.engine.precision import amp_dtype_for
from segrecipes.evaluation.confusion import write_confusion
from segrecipes.evaluation.evaluate import evaluate
from segrecipes.evaluation.metrics import format_table


def eval_command(
    checkpoint: Annotated[Path, typer.Option(help="Run folder or checkpoint file.")],
    data: Annotated[Optional[str], typer.Option(help="Dataset spec (default: the run's own).")] = None,
    protocol: flags.Protocol = None,
    tta: flags.TTA = None,
    scales: flags.Scales = None,
    mode: flags.Mode = None,
    crop_size: flags.CropSize = None,
    stride: flags.Stride = None,
    eval_size: flags.EvalSize = None,
    batch_size: flags.BatchSize = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    json_out: Annotated[bool, typer.Option("--json", help="Print the full metrics as JSON.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Folder for confusion.csv and confusion.png (default: eval/ "
                                                     "in the run folder, or beside the checkpoint file).")] = None,
) -> None:
    """Evaluate a checkpoint: mIoU, pixel accuracy, per-class IoU, ADE20k score."""
    update = flags.overrides("eval options", protocol=protocol, tta=tta, scales=scales, mode=mode,
                             crop_size=crop_size, stride=stride, eval_size=eval_size, batch_size=batch_size)
    dist = init_distributed(device)
    trained = load_trained_model(checkpoint, dist.device)
    cfg, val = scoring_data(trained, flags.apply(trained.config, update, "eval options"), data)
    options = cfg.eval
    metrics = evaluate(trained.model, val, options, class_names=val.class_names, ignore_index=val.ignore_index,
                       device=dist.device, amp_dtype=amp_dtype_for(cfg.train.precision, dist.device),
                       progress=not json_out and dist.is_main and Console().is_terminal)  # quiet in logs
    if not dist.is_main:
        return
    folder = out or (checkpoint if checkpoint.is_dir() else checkpoint.parent) / "eval"
    try:
        paths: dict[str, str | None] = {name: str(path) for name, path in write_confusion(metrics, folder).items()}
    except OSError as error:  # the scores are what was asked for: print them anyway
        warnings.warn(f"--out {folder}: the confusion matrix could not be written: {error}", stacklevel=1)
        paths = {"csv": None, "png": None}
    if json_out:
        confusion = {"class_names": list(metrics.class_names), "counts": metrics.confusion.tolist(), **paths}
        print(json.dumps({"checkpoint": str(trained.source), "data": cfg.data.spec, "protocol": options.protocol,
                          "tta": options.tta, "mode": options.mode, **metrics.to_dict(),
                          "confusion_matrix": confusion}, indent=2))
        return
    console = Console()
    console.print(format_table(metrics))
    if paths["csv"]:
        console.print(f"confusion matrix: {paths['csv']} and {paths['png']}")
