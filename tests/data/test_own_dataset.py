"""A user's own folder dataset: colour masks with a palette, 0/255 masks with a label map, 4-band TIFF
tiles, each trained for a few steps; and `data check` saying the fix for each common mistake."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml
from PIL import Image

from segrecipes.cli.main import main
from segrecipes.data.check import check_dataset
from segrecipes.data.palette import read_palette
from segrecipes.data.spec import build_raw_dataset
from segrecipes.run import build_trainer
from helpers.tiny import tiny_config

COLOURS = [(0, 0, 0), (255, 0, 0), (0, 128, 255)]
SIZE = 40


def _classes(seed: int) -> np.ndarray:
    """A (SIZE, SIZE) map of classes 0..2 in three horizontal bands, shifted by the seed."""
    rows = (np.arange(SIZE)[:, None] + 3 * seed) % SIZE
    return np.broadcast_to(rows * 3 // SIZE, (SIZE, SIZE)).astype(np.uint8)


def _images(root: Path, count: int = 4) -> None:
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "masks" / split).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            pixels = np.random.default_rng(index).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "images" / split / f"{index}.png")


def _colour_dataset(root: Path) -> Path:
    _images(root)
    for split in ("train", "val"):
        for index in range(4):
            rgb = np.array(COLOURS, dtype=np.uint8)[_classes(index)]
            Image.fromarray(rgb).save(root / "masks" / split / f"{index}.png")
    palette = root / "palette.txt"
    palette.write_text("".join(f"{r} {g} {b} {name}\n" for (r, g, b), name in zip(COLOURS, ["sky", "road", "car"])))
    return palette


def _train(spec: str, *overrides: str) -> dict:
    config = tiny_config(f"data.spec={spec}", "train.eval_interval=2ba", "data.crop_size=32", *overrides)
    return build_trainer(config, None).fit()


def test_palette_file_formats_agree(tmp_path: Path) -> None:
    text = tmp_path / "p.txt"
    text.write_text("# colours\n0 0 0 sky\n255 0 0 road side\n")
    csv_with_header = tmp_path / "p.csv"
    csv_with_header.write_text("name,r,g,b\nsky,0,0,0\nroad side,255,0,0\n")
    indexed = tmp_path / "p.png"
    image = Image.new("P", (2, 2))
    image.putpalette([0, 0, 0, 255, 0, 0])
    image.save(indexed)
    for path in (text, csv_with_header):
        palette = read_palette(path)
        assert palette.colours.tolist() == [[0, 0, 0], [255, 0, 0]] and palette.names == ("sky", "road side")
    assert read_palette(indexed, num_classes=2).colours.tolist() == [[0, 0, 0], [255, 0, 0]]


def test_colour_masks_train_with_a_palette_and_unknown_colours_are_named(tmp_path: Path) -> None:
    root = tmp_path / "data"
    palette = _colour_dataset(root)
    spec = f"folder:{root}"
    config = tiny_config(f"data.spec={spec}", f"data.palette={palette}")
    raw = build_raw_dataset(config.data, "train")
    image, labels = raw[1]
    assert raw.class_names == ["sky", "road", "car"] and torch.equal(labels, torch.from_numpy(_classes(1)))
    assert _train(spec, f"data.palette={palette}")["step"] == 6
    # a colour that is not in the palette is reported with the file and the colour
    rgb = np.array(COLOURS, dtype=np.uint8)[_classes(0)]
    rgb[0, 0] = (7, 7, 7)
    Image.fromarray(rgb).save(root / "masks" / "train" / "0.png")
    (issue,) = check_dataset(config.data, ("train",)).errors
    assert issue.path.endswith("0.png") and "(7, 7, 7)" in issue.message


def test_binary_0_255_masks_train_with_a_label_map_and_the_check_says_so(tmp_path: Path, capsys) -> None:
    root = tmp_path / "data"
    _images(root)
    for split in ("train", "val"):
        for index in range(4):
            Image.fromarray((_classes(index) > 0).astype(np.uint8) * 255).save(root / "masks" / split / f"{index}.png")
    spec = f"folder:{root}"
    assert main_exit(["data", "check", spec, "--num-classes", "2"]) == 2
    assert "set data.label_map: {0: 0, 255: 1}" in capsys.readouterr().out
    config = tiny_config(f"data.spec={spec}", "data.num_classes=2", "data.label_map={0: 0, 255: 1}")
    assert check_dataset(config.data).ok
    assert build_raw_dataset(config.data, "train")[1][1].unique().tolist() == [0, 1]
    assert _train(spec, "data.num_classes=2", "data.label_map={0: 0, 255: 1}")["step"] == 6


def main_exit(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    return int(exited.value.code or 0)


def test_the_check_prints_the_fix_for_jpeg_rgb_and_zero_label_mistakes(tmp_path: Path, capsys) -> None:
    jpeg, rgb, shifted = tmp_path / "jpeg", tmp_path / "rgb", tmp_path / "shifted"
    _images(jpeg, 1)
    Image.fromarray(_classes(0)).save(jpeg / "masks" / "train" / "0.jpg", format="JPEG")
    _colour_dataset(rgb)
    _images(shifted, 1)
    Image.fromarray(_classes(0) + 1).save(shifted / "masks" / "train" / "0.png")  # 1..3: 0 would be "unlabelled"
    cases = [(jpeg, ["--num-classes", "3"], "export the masks again as PNG"),
             (rgb, ["--num-classes", "3"], "set data.palette"),
             (shifted, ["--num-classes", "3"], "set data.reduce_zero_label: true"),
             (shifted, ["--num-classes", "4", "--reduce-zero-label"], "set data.reduce_zero_label: false")]
    for root, options, fix in cases:
        main_exit(["data", "check", f"folder:{root}", "--splits", "train", *options])
        assert fix in capsys.readouterr().out, (root, options)


def _tiff_dataset(root: Path) -> None:
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "masks" / split).mkdir(parents=True)
        for index in range(4):
            bands = np.random.default_rng(index).integers(0, 4000, (SIZE, SIZE, 4), dtype=np.uint16)
            tifffile.imwrite(root / "images" / split / f"{index}.tif", bands)
            Image.fromarray(_classes(index)).save(root / "masks" / split / f"{index}.png")


@pytest.mark.parametrize("model", ["deeplabv3plus", "smp:Unet"])
def test_four_band_tiff_tiles_train(tmp_path: Path, model: str) -> None:
    root = tmp_path / "tiles"
    _tiff_dataset(root)
    stats = ("data.in_channels=4", "data.mean=[2000, 2000, 2000, 2000]", "data.std=[1150, 1150, 1150, 1150]",
             "data.num_classes=3")
    config = tiny_config(f"data.spec=folder:{root}", *stats)
    image, _ = build_raw_dataset(config.data, "train")[0]
    stored = torch.from_numpy(tifffile.imread(root / "images" / "train" / "0.tif").astype(np.float32)).permute(2, 0, 1)
    assert image.dtype == torch.float32 and torch.allclose(image, (stored - 2000) / 1150)
    assert _train(f"folder:{root}", *stats, f"model.name={model}")["step"] == 6


def test_auto_channel_statistics_are_counted_from_the_training_tiles_and_saved_with_the_run(
    tmp_path: Path, capsys
) -> None:
    root = tmp_path / "tiles"
    _tiff_dataset(root)
    options = ("data.in_channels=4", "data.mean=auto", "data.std=auto", "data.num_classes=3")
    assert main_exit(["data", "check", f"folder:{root}", *(f"--set={option}" for option in options)]) == 0
    assert "16-bit-image" not in capsys.readouterr().out  # auto normalizes them: no advice to give numbers
    bands = np.stack([tifffile.imread(root / "images" / "train" / f"{index}.tif") for index in range(4)]).astype(float)
    run = tmp_path / "run"
    build_trainer(tiny_config(f"data.spec=folder:{root}", *options, "train.duration=2ba"), run).fit()
    saved = yaml.safe_load((run / "config.yaml").read_text())["data"]
    assert saved["mean"] == pytest.approx(bands.mean(axis=(0, 1, 2)).tolist(), rel=1e-9)
    assert saved["std"] == pytest.approx(bands.std(axis=(0, 1, 2)).tolist(), rel=1e-9)


def test_a_user_transform_runs_after_the_pipeline_seeded_per_sample(tmp_path: Path) -> None:
    from segrecipes.data.augmented import AugmentedDataset
    from segrecipes.data.spec import train_transform

    root = tmp_path / "data"
    _colour_dataset(root)
    config = tiny_config(f"data.spec=folder:{root}", f"data.palette={root / 'palette.txt'}",
                         "data.transform=helpers.user_transforms:random_erase")
    data = AugmentedDataset(build_raw_dataset(config.data, "train"), train_transform(config.data))
    first, again, other = data[(0, 5)], data[(0, 5)], data[(0, 6)]
    assert torch.equal(first[0], again[0]) and not torch.equal(first[0], other[0])
    before = torch.random.get_rng_state()
    data[(1, 7)]
    assert torch.equal(before, torch.random.get_rng_state())  # the process's own RNG is untouched
    bad = tiny_config(f"data.spec=folder:{root}", "data.transform=helpers.user_transforms:nothing_here")
    with pytest.raises(Exception, match="data.transform: 'helpers.user_transforms' has no 'nothing_here'"):
        train_transform(bad.data)


def test_predict_reads_tiles_with_the_runs_channels_and_normalization(tmp_path: Path) -> None:
    root = tmp_path / "tiles"
    _tiff_dataset(root)
    stats = ("data.in_channels=4", "data.mean=[2000, 2000, 2000, 2000]", "data.std=[1150, 1150, 1150, 1150]",
             "data.num_classes=3", "train.checkpoint_interval=6ba")
    build_trainer(tiny_config(f"data.spec=folder:{root}", *stats), tmp_path / "run").fit()
    out = tmp_path / "predicted"
    main_exit_ok = ["predict", "--checkpoint", str(tmp_path / "run"), "--out", str(out), str(root / "images" / "val")]
    with pytest.raises(SystemExit) as exited:
        main(main_exit_ok)
    assert exited.value.code in (0, None)
    labels = np.array(Image.open(out / "0.png"))
    assert labels.shape == (SIZE, SIZE) and labels.max() < 3
    assert np.array(Image.open(out / "0_overlay.png")).shape[-1] == 3  # the first three bands, stretched
