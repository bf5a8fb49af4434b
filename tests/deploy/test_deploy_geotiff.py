"""``predict --geotiff``: the output keeps the source's georeference, size and nodata areas, the source is read
one band of tile rows at a time, and bad inputs are refused in one line."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.cli import run_cli
from torchvision.io import decode_image, write_png

rasterio = pytest.importorskip("rasterio", reason="the geo extra (rasterio) is not installed")

HEIGHT, WIDTH, TILE = 70, 90, 32



def _pixels(bands: int = 3) -> np.ndarray:
    return np.random.default_rng(0).integers(1, 256, (bands, HEIGHT, WIDTH), dtype=np.uint8)


def _write(path: Path, pixels: np.ndarray, nodata: float | None) -> Path:
    profile = {"driver": "GTiff", "width": WIDTH, "height": HEIGHT, "count": pixels.shape[0], "dtype": "uint8",
               "crs": "EPSG:32633", "transform": rasterio.transform.Affine(0.5, 0, 500000, 0, -0.5, 4600000),
               "nodata": nodata}
    with rasterio.open(path, "w", **profile) as scene:
        scene.write(pixels)
    return path


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    pixels = _pixels()
    pixels[:, :20, :30] = 0  # a nodata corner
    return _write(tmp_path / "scene.tif", pixels, nodata=0)


@pytest.mark.slow
def test_geotiff_keeps_crs_transform_size_and_nodata(tiny_run, scene, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "predict", scene, "--checkpoint", tiny_run, "--out", out, "--geotiff", "--tile",
                        TILE, "--probabilities", "--device", "cpu")
    assert code == 0, err
    with rasterio.open(scene) as source, rasterio.open(out / "scene.tif") as labels:
        assert labels.crs == source.crs and labels.transform == source.transform
        assert (labels.height, labels.width, labels.count, labels.dtypes[0]) == (HEIGHT, WIDTH, 1, "uint8")
        assert labels.nodata == 255 and labels.profile["tiled"] and labels.compression.name == "deflate"
        # the nodata areas are the source's, exactly
        np.testing.assert_array_equal(labels.dataset_mask(), source.dataset_mask())
        values = labels.read(1)
    assert (values[:20, :30] == 255).all() and (values[20:] < 6).all()
    with rasterio.open(out / "scene_probs.tif") as probs:
        assert probs.count == 6 and probs.dtypes[0] == "float32" and probs.crs is not None
        stack = probs.read()
    assert np.isnan(stack[:, :20, :30]).all()
    np.testing.assert_allclose(stack[:, 20:].sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(stack[:, 20:].argmax(axis=0), values[20:])


@pytest.mark.slow
def test_geotiff_is_read_a_band_of_tiles_at_a_time_and_matches_tiled_png(tiny_run, tmp_path, capsys,
                                                                         monkeypatch) -> None:
    pixels = _pixels()
    scene = _write(tmp_path / "plain.tif", pixels, nodata=None)
    reads: list[tuple[int, int, int, int]] = []
    original = rasterio.io.DatasetReader.read

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        window = kwargs.get("window")
        reads.append((window.row_off, window.col_off, window.height, window.width) if window else (0, 0, -1, -1))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", spy)
    code, _, err = run_cli(capsys, "predict", scene, "--checkpoint", tiny_run, "--out", tmp_path / "geo", "--geotiff",
                        "--tile", TILE, "--overlap", "0.25", "--device", "cpu")
    assert code == 0, err
    # tiles of 32 every 24 rows, the last flush with the border: 0, 24, 38; never the whole file
    assert reads == [(0, 0, TILE, WIDTH), (24, 0, TILE, WIDTH), (38, 0, TILE, WIDTH)]
    monkeypatch.setattr(rasterio.io.DatasetReader, "read", original)
    with rasterio.open(tmp_path / "geo" / "plain.tif") as labels:
        geo = torch.from_numpy(labels.read(1))
    # the same pixels as a PNG, predicted in tiles in memory: the same labels
    write_png(torch.from_numpy(pixels), str(tmp_path / "plain.png"))
    code, _, err = run_cli(capsys, "predict", tmp_path / "plain.png", "--checkpoint", tiny_run, "--out", tmp_path / "png",
                        "--tile", TILE, "--overlap", "0.25", "--no-overlay", "--device", "cpu")
    assert code == 0, err
    assert torch.equal(decode_image(str(tmp_path / "png" / "plain.png"))[0], geo)


@pytest.mark.slow
def test_bad_geotiff_inputs_are_one_line_exit_2(tiny_run, tmp_path, capsys, monkeypatch) -> None:
    four = _write(tmp_path / "four.tif", _pixels(4), nodata=None)
    code, _, err = run_cli(capsys, "predict", four, "--checkpoint", tiny_run, "--out", tmp_path / "o", "--geotiff")
    assert (code, err) == (2, f"error: {four}: has 4 bands but the model takes 3 channels (data.in_channels)\n")
    three = _write(tmp_path / "three.tif", _pixels(3), nodata=None)
    code, _, err = run_cli(capsys, "predict", three, "--checkpoint", tiny_run, "--out", tmp_path / "o", "--geotiff",
                        "--tile", "8")
    assert (code, err) == (2, "error: --tile 8: smaller than the network's stride 16 (deeplabv3plus/resnet18); "
                              "use at least 16\n")
    assert not (tmp_path / "o").exists()
    monkeypatch.setitem(sys.modules, "rasterio", None)
    code, _, err = run_cli(capsys, "predict", three, "--checkpoint", tiny_run, "--out", tmp_path / "o", "--geotiff")
    assert (code, err) == (2, "error: GeoTIFF input needs the 'rasterio' package: pip install \"segrecipes[geo]\"\n")
