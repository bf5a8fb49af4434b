"""GeoTIFF in, GeoTIFF out (``segrecipes[geo]``, rasterio): multi-band scenes read one band of tile rows at a
time (a file larger than memory is fine), predicted in tiles, and written as a tiled, compressed single-band
uint8 GeoTIFF with the source's CRS, transform and size; pixels the source marks nodata (its nodata value or
mask) are nodata (255) in the prediction. An optional probability raster has one float32 band per class."""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segrecipes.data.normalize import normalize
from segrecipes.data.spec import channel_stats
from segrecipes.deploy.trained_model import TrainedModel
from segrecipes.disk import temporary_path
from segrecipes.evaluation.options import InferenceOptions
from segrecipes.evaluation.tiles import tiled_rows

from .errors import DeployError
from .extras import require
from .predict import Tiling, check_tile

GEOTIFF_SUFFIXES = (".tif", ".tiff")
NODATA_LABEL = 255
PROBABILITIES_SUFFIX = "_probs"
_BLOCK = 256  # output tiles (GDAL blocks) of 256 x 256, deflate-compressed
# GDAL's block cache while predicting (its default is 5% of RAM): holds the output block rows being written
_GDAL_CACHE_MB = 256


def _rasterio() -> Any:
    return require("rasterio", "geo", "GeoTIFF input")


def geotiff_outputs(image: Path, out_dir: Path) -> tuple[Path, Path]:
    """Where the label raster and the probability raster of ``image`` go."""
    return out_dir / f"{image.stem}.tif", out_dir / f"{image.stem}{PROBABILITIES_SUFFIX}.tif"


def check_geotiff(trained: TrainedModel, path: Path) -> None:
    """Refuse, before any prediction, a file that is no GeoTIFF rasterio reads or whose bands the model cannot take."""
    rasterio = _rasterio()
    if path.suffix.lower() not in GEOTIFF_SUFFIXES:
        raise DeployError(f"{path}: --geotiff takes .tif/.tiff files")
    try:
        with rasterio.open(path) as source:
            count, dtype = source.count, source.dtypes[0]
    except rasterio.errors.RasterioIOError as error:
        raise DeployError(f"{path}: not a readable GeoTIFF ({str(error).splitlines()[0][:120]})") from None
    channels = trained.config.data.in_channels
    if count != channels:
        raise DeployError(f"{path}: has {count} bands but the model takes {channels} channels (data.in_channels)")
    if channel_stats(trained.config.data) is None and dtype != "uint8":
        raise DeployError(f"{path}: {dtype} bands, but the model normalizes 8-bit RGB; train with data.mean/std "
                          "in the images' units for other data")
    if trained.num_classes >= NODATA_LABEL:
        raise DeployError(f"{trained.source}: {trained.num_classes} classes leave no uint8 value for nodata")


def _profile(source: Any, count: int, dtype: str, nodata: float) -> dict[str, Any]:
    return {
        "driver": "GTiff", "width": source.width, "height": source.height, "count": count, "dtype": dtype,
        "crs": source.crs, "transform": source.transform, "nodata": nodata, "tiled": True,
        "blockxsize": _BLOCK, "blockysize": _BLOCK, "compress": "deflate", "BIGTIFF": "IF_SAFER",
    }


def predict_geotiff(
    trained: TrainedModel, path: Path, out_dir: Path, options: InferenceOptions, tiling: Tiling, *,
    device: torch.device | str = "cpu", amp_dtype: torch.dtype | None = None, probabilities: bool = False,
) -> Path:
    """Predict the GeoTIFF ``path`` into ``out_dir/<stem>.tif`` (and ``<stem>_probs.tif``); returns the former.
    Outputs are written under temporary names and renamed when complete: no half-written raster is left."""
    rasterio = _rasterio()
    check_tile(trained, tiling)
    check_geotiff(trained, path)
    device = torch.device(device)
    stats = channel_stats(trained.config.data)
    labels_path, probs_path = geotiff_outputs(path, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staged = {labels_path: temporary_path(labels_path), probs_path: temporary_path(probs_path)}
    valid: dict[int, torch.Tensor] = {}  # first row -> the rows' data mask, for the band being predicted

    with ExitStack() as stack:
        stack.enter_context(rasterio.Env(GDAL_CACHEMAX=_GDAL_CACHE_MB))
        source = stack.enter_context(rasterio.open(path))

        def read_rows(top: int, count: int) -> torch.Tensor:
            window = rasterio.windows.Window(0, top, source.width, count)
            pixels = torch.from_numpy(source.read(window=window))
            valid[top] = torch.from_numpy(source.dataset_mask(window=window) > 0)
            image = stats(pixels) if stats is not None else normalize(pixels)
            return (image * valid[top]).to(device)[None]  # nodata pixels at the mean, so they do not stand out

        labels_out = stack.enter_context(rasterio.open(staged[labels_path], "w", **_profile(source, 1, "uint8",
                                                                                              NODATA_LABEL)))
        probs_out = stack.enter_context(rasterio.open(
            staged[probs_path], "w", **_profile(source, trained.num_classes, "float32", float("nan")),
        )) if probabilities else None
        try:
            trained.model.eval()
            with torch.inference_mode():
                for top, scores in tiled_rows(trained.model, read_rows, source.height, source.width, options,
                                              tile=tiling.size, overlap=tiling.overlap,
                                              num_classes=trained.num_classes, amp_dtype=amp_dtype):
                    mask = _rows_mask(valid, top, scores.shape[1])
                    window = rasterio.windows.Window(0, top, source.width, scores.shape[1])
                    labels = scores.argmax(dim=0).cpu().to(torch.uint8).masked_fill_(~mask, NODATA_LABEL)
                    labels_out.write(labels.numpy()[None], window=window)
                    if probs_out is not None:
                        probs = scores.softmax(dim=0).cpu().masked_fill_(~mask, float("nan"))
                        probs_out.write(probs.numpy().astype(np.float32, copy=False), window=window)
        except BaseException:
            stack.close()
            for staged_path in staged.values():
                staged_path.unlink(missing_ok=True)
            raise
    os.replace(staged[labels_path], labels_path)
    if probabilities:
        os.replace(staged[probs_path], probs_path)
    return labels_path


def _rows_mask(valid: dict[int, torch.Tensor], top: int, count: int) -> torch.Tensor:
    """The data mask of rows ``top:top + count`` from the tile rows read so far (older ones are dropped)."""
    parts, row = [], top
    for first in sorted(valid):
        rows = valid[first]
        if first <= row < first + rows.shape[0]:
            take = rows[row - first: min(first + rows.shape[0], top + count) - first]
            parts.append(take)
            row += take.shape[0]
        if row >= top + count:
            break
    for first in [first for first in valid if first + valid[first].shape[0] <= top + count]:
        del valid[first]
    return torch.cat(parts)
