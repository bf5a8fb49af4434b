"""``segrecipes bench tiled``: peak memory and speed of a tiled GeoTIFF prediction of a large synthetic scene,
each measured in a fresh process, against the same process with the model loaded and no scene predicted."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import torch
import typer
from rich.console import Console

from segrecipes.bench.peak_memory import peak_rss
from segrecipes.bench.scene import write_scene
from segrecipes.deploy.extras import require
from segrecipes.deploy.geotiff import predict_geotiff
from segrecipes.deploy.loading import load_model
from segrecipes.deploy.predict import Tiling, check_tile


def _job(checkpoint: str, scene: str | None, out: str, tile: int, overlap: float, threads: int) -> dict[str, Any]:
    """In the measured process: load the model and, with a ``scene``, predict it (no scene: the baseline)."""
    torch.set_num_threads(threads)
    trained = load_model(checkpoint, "cpu")
    start = time.perf_counter()
    if scene is not None:
        predict_geotiff(trained, Path(scene), Path(out), trained.config.eval, Tiling(tile, overlap))
    return {"seconds": time.perf_counter() - start, "classes": trained.num_classes}


def tiled_command(
    checkpoint: Annotated[str, typer.Option(help="Run folder, checkpoint or export to predict with.")],
    sizes: Annotated[str, typer.Option(help="Square scene sides to measure, comma-separated.")] = "2048,8192",
    tile: Annotated[int, typer.Option(help="Tile side in pixels.")] = 512,
    overlap: Annotated[float, typer.Option(help="Tiles' overlap, a fraction of --tile.")] = 0.25,
    threads: Annotated[int, typer.Option(help="torch threads in the measured process.")] = 1,
    workdir: Annotated[Optional[Path], typer.Option(help="Folder for the scenes (default: a temporary one).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Peak resident memory of `predict --geotiff --tile` on synthetic scenes, minus the model-only baseline."""
    require("rasterio", "geo", "bench tiled")
    check_tile(load_model(checkpoint, "cpu"), Tiling(tile, overlap))
    try:
        sides = [int(part) for part in sizes.split(",")]
    except ValueError:
        raise typer.BadParameter(f"--sizes {sizes!r}: expected comma-separated whole numbers") from None
    with tempfile.TemporaryDirectory(dir=workdir) as scratch:
        baseline = peak_rss(_job, checkpoint, None, scratch, tile, overlap, threads)
        rows = []
        for side in sides:
            scene = Path(scratch) / f"scene{side}.tif"
            write_scene(scene, side)
            result = peak_rss(_job, checkpoint, str(scene), scratch, tile, overlap, threads)
            whole_logits_mib = result["classes"] * side * side * 4 / 2**20
            rows.append({"side": side, "peak_rss_mib": result["peak_rss_mib"],
                         "above_baseline_mib": result["peak_rss_mib"] - baseline["peak_rss_mib"],
                         "whole_image_logits_mib": whole_logits_mib, "seconds": result["seconds"],
                         "megapixels_per_s": side * side / 1e6 / result["seconds"]})
    if json_out:
        print(json.dumps({"baseline_peak_rss_mib": baseline["peak_rss_mib"], "tile": tile, "overlap": overlap,
                          "threads": threads, "scenes": rows}, indent=2))
        return
    console = Console()
    console.print(f"model loaded, nothing predicted: peak {baseline['peak_rss_mib']:.0f} MiB "
                  f"(tile {tile}, overlap {overlap}, {threads} thread(s))")
    for row in rows:
        console.print(f"{row['side']} x {row['side']}: peak {row['peak_rss_mib']:.0f} MiB, "
                      f"+{row['above_baseline_mib']:.0f} MiB over the baseline (whole-image float32 logits alone: "
                      f"{row['whole_image_logits_mib']:.0f} MiB), {row['seconds']:.1f} s, "
                      f"{row['megapixels_per_s']:.2f} MP/s")
