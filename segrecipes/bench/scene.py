"""A synthetic multi-band GeoTIFF of any size, written band of rows by band of rows (never whole in memory):
the input of the tiled-inference memory benchmark."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

_ROWS = 512


def write_scene(path: Path, size: int, bands: int = 3) -> None:
    """``size`` x ``size`` uint8 pixels: smooth gradients with a grid of squares (compressible, not constant),
    EPSG:32633 at 0.5 m, tiled and deflate-compressed."""
    rasterio = importlib.import_module("rasterio")
    profile = {"driver": "GTiff", "width": size, "height": size, "count": bands, "dtype": "uint8",
               "crs": "EPSG:32633", "transform": rasterio.transform.Affine(0.5, 0, 500000, 0, -0.5, 4600000),
               "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate", "BIGTIFF": "IF_SAFER"}
    columns = np.arange(size)
    with rasterio.open(path, "w", **profile) as scene:
        for top in range(0, size, _ROWS):
            rows = np.arange(top, min(top + _ROWS, size))[:, None]
            squares = ((rows // 97 + columns // 97) % 2 * 90).astype(np.int64)
            block = np.stack([(rows * 255 // size + columns[None] * 127 // size + squares + band * 40) % 256
                              for band in range(bands)]).astype(np.uint8)
            scene.write(block, window=rasterio.windows.Window(0, top, size, rows.shape[0]))
