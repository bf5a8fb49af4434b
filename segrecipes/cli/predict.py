"""``segrecipes predict``: label maps and colour overlays for images, from a run or an exported model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from segrecipes.config import build_config
from segrecipes.deploy.loading import load_model
from segrecipes.deploy.predict import PredictOptions, find_images, predict_files
from segrecipes.engine.distributed import pick_device
from segrecipes.engine.trainer import amp_dtype_for


def predict_command(
    inputs: Annotated[list[Path], typer.Argument(help="Image files and/or folders of images.", show_default=False)],
    checkpoint: Annotated[Path, typer.Option(help="Run folder, checkpoint or .onnx/.torchscript/.safetensors export.")],
    out: Annotated[Path, typer.Option(help="Folder for <stem>.png label maps and <stem>_overlay.png overlays.")],
    tta: Annotated[str, typer.Option(help="none | flip | ms-flip")] = "none",
    scales: Annotated[Optional[str], typer.Option(help="ms-flip scales, e.g. 0.5,0.75,1.0,1.25,1.5,1.75")] = None,
    eval_size: Annotated[Optional[int], typer.Option(min=1, help="Short side to predict at (default: the run's).")] = None,
    mode: Annotated[str, typer.Option(help="whole | slide (windows of the run's crop size, stride 2/3)")] = "whole",
    ade20k_submission: Annotated[bool, typer.Option(help="Write labels 1..150 as the ADE20k benchmark wants.")] = False,
    overlay: Annotated[bool, typer.Option(help="Also write colour overlays with a legend.")] = True,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
) -> None:
    """Predict a label map for every image, at its original size (standard protocol)."""
    requested = {"tta": tta, "mode": mode} | ({"scales": scales.split(",")} if scales else {})
    settings = build_config({"eval": requested}, "predict options").eval
    images = find_images(inputs)
    target = pick_device(device)
    trained = load_model(checkpoint, target)
    cfg = trained.config
    options = PredictOptions(
        eval_size=eval_size or cfg.data.eval_size, tta=settings.tta, scales=settings.scales, mode=settings.mode,
        crop_size=cfg.data.crop_size, stride=max(1, cfg.data.crop_size * 2 // 3),
        amp_dtype=amp_dtype_for(cfg.train.precision, target),
    )
    predict_files(trained, images, out, options, device=target, ade20k_submission=ade20k_submission,
                  overlay=overlay, progress=True)
    outputs = "label maps and overlays" if overlay else "label maps"
    Console().print(f"wrote {outputs} of {len(images)} images to {out}")
