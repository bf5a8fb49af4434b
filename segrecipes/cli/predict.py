"""``segrecipes predict``: label maps and colour overlays for images, from a run or an exported model; large
images in tiles, GeoTIFFs into GeoTIFFs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from segrecipes.cli import inference_flags as flags
from segrecipes.deploy.errors import DeployError
from segrecipes.deploy.geotiff import check_geotiff, predict_geotiff
from segrecipes.deploy.loading import load_model
from segrecipes.deploy.predict import Tiling, find_images, predict_files
from segrecipes.engine.distributed import pick_device
from segrecipes.engine.precision import amp_dtype_for

DEFAULT_GEOTIFF_TILE = 512


def predict_command(
    inputs: Annotated[list[Path], typer.Argument(help="Image files and/or folders of images.", show_default=False)],
    checkpoint: Annotated[str, typer.Option(help="Run folder, checkpoint, .onnx/.xml/.torchscript/.safetensors "
                                                 "export, Hugging Face model folder or hf://OWNER/REPO.")],
    out: Annotated[Path, typer.Option(help="Folder for <stem>.png label maps and <stem>_overlay.png overlays.")],
    tta: flags.TTA = None,
    scales: flags.Scales = None,
    eval_size: flags.EvalSize = None,
    mode: flags.Mode = None,
    crop_size: flags.CropSize = None,
    stride: flags.Stride = None,
    tile: Annotated[Optional[int], typer.Option(help="Predict at the image's own size in overlapping tiles of this "
                                                     "many pixels (large images).")] = None,
    overlap: Annotated[float, typer.Option(help="Tiles' overlap, a fraction of --tile.")] = 0.25,
    geotiff: Annotated[bool, typer.Option(help="Inputs are GeoTIFFs, read window by window; write <stem>.tif with "
                                               f"their CRS and transform (tiles of {DEFAULT_GEOTIFF_TILE} unless "
                                               "--tile).")] = False,
    probabilities: Annotated[bool, typer.Option(help="With --geotiff, also <stem>_probs.tif: one float32 band "
                                                     "per class.")] = False,
    ade20k_submission: Annotated[bool, typer.Option(help="Write labels 1..150 as the ADE20k benchmark wants.")] = False,
    overlay: Annotated[bool, typer.Option(help="Also write colour overlays with a legend.")] = True,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
) -> None:
    """Predict a label map for every image, at its original size (standard protocol, or tiles)."""
    update = flags.overrides("predict options", tta=tta, scales=scales, mode=mode, crop_size=crop_size,
                             stride=stride, eval_size=eval_size)
    if probabilities and not geotiff:
        raise DeployError("--probabilities writes a probability raster: it needs --geotiff")
    images = find_images(inputs)
    target = pick_device(device)
    trained = load_model(checkpoint, target)
    cfg = flags.apply(trained.config, update, "predict options")
    tiling = Tiling(tile or DEFAULT_GEOTIFF_TILE, overlap) if geotiff else Tiling(tile, overlap) if tile else None
    amp_dtype = amp_dtype_for(cfg.train.precision, target)  # predict_files and predict_geotiff check the tiling
    if geotiff:
        for image in images:
            check_geotiff(trained, image)
        for image in images:
            predict_geotiff(trained, image, out, cfg.eval, tiling, device=target, amp_dtype=amp_dtype,
                            probabilities=probabilities)
        Console().print(f"wrote GeoTIFF label rasters{' and probabilities' if probabilities else ''} of "
                        f"{len(images)} images to {out}")
        return
    predict_files(trained, images, out, cfg.eval, device=target, amp_dtype=amp_dtype,
                  ade20k_submission=ade20k_submission, overlay=overlay,
                  progress=Console().is_terminal, tiling=tiling)  # a bar on a terminal, quiet in logs
    outputs = "label maps and overlays" if overlay else "label maps"
    Console().print(f"wrote {outputs} of {len(images)} images to {out}")
