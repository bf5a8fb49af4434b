"""``segrecipes predict``: label maps and colour overlays for images, from a run or an exported model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from segrecipes.cli import inference_flags as flags
from segrecipes.deploy.loading import load_model
from segrecipes.deploy.predict import find_images, predict_files
from segrecipes.engine.distributed import pick_device
from segrecipes.engine.precision import amp_dtype_for


def predict_command(
    inputs: Annotated[list[Path], typer.Argument(help="Image files and/or folders of images.", show_default=False)],
    checkpoint: Annotated[Path, typer.Option(help="Run folder, checkpoint or .onnx/.torchscript/.safetensors export.")],
    out: Annotated[Path, typer.Option(help="Folder for <stem>.png label maps and <stem>_overlay.png overlays.")],
    tta: flags.TTA = None,
    scales: flags.Scales = None,
    eval_size: flags.EvalSize = None,
    mode: flags.Mode = None,
    crop_size: flags.CropSize = None,
    stride: flags.Stride = None,
    ade20k_submission: Annotated[bool, typer.Option(help="Write labels 1..150 as the ADE20k benchmark wants.")] = False,
    overlay: Annotated[bool, typer.Option(help="Also write colour overlays with a legend.")] = True,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
) -> None:
    """Predict a label map for every image, at its original size (standard protocol)."""
    update = flags.overrides("predict options", tta=tta, scales=scales, mode=mode, crop_size=crop_size,
                             stride=stride, eval_size=eval_size)
    images = find_images(inputs)
    target = pick_device(device)
    trained = load_model(checkpoint, target)
    cfg = flags.apply(trained.config, update, "predict options")
    predict_files(trained, images, out, cfg.eval, device=target,
                  amp_dtype=amp_dtype_for(cfg.train.precision, target), ade20k_submission=ade20k_submission,
                  overlay=overlay, progress=Console().is_terminal)  # a bar on a terminal, quiet in logs
    outputs = "label maps and overlays" if overlay else "label maps"
    Console().print(f"wrote {outputs} of {len(images)} images to {out}")
