"""``voc:PATH`` and ``cvat:PATH``: the split lists decide the pairs, VOC's palette indices and CVAT's
labelmap colours become the hand-drawn classes, a single split is cut by data.val_fraction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers.exports import CVAT_CLASSES, VOC_MASK, write_colour_mask, write_cvat, write_voc
from helpers.tiny import tiny_config
from segrecipes.cli.main import main
from segrecipes.data.check import check_dataset
from segrecipes.data.errors import DataError
from segrecipes.data.settings import DataSettings
from segrecipes.data.spec import build_raw_dataset
from segrecipes.data.voc import CLASS_NAMES
from segrecipes.run import build_trainer


def _data(spec: str, *, split: str = "train", **settings: object):
    return build_raw_dataset(DataSettings(spec=spec, **settings), split)


def _check(capsys: pytest.CaptureFixture[str], spec: str, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "check", spec, *args])
    return exit_info.value.code, capsys.readouterr().out


def test_voc_masks_are_the_palette_indices_with_the_border_ignored(tmp_path: Path) -> None:
    root = write_voc(tmp_path, {"train": ["2007_000032", "2007_000039"], "val": ["2007_000033"]})
    train, val = _data(f"voc:{root}"), _data(f"voc:{root}", split="val")
    assert train.class_names == list(CLASS_NAMES) and len(CLASS_NAMES) == 21
    assert [Path(train.image_path(index)).stem for index in range(len(train))] == ["2007_000032", "2007_000039"]
    for position, dataset in ((0, train), (1, train), (0, val)):
        index = position if dataset is train else 0
        image, labels = dataset[index]
        assert image.shape == (3, 4, 4)
        np.testing.assert_array_equal(labels.numpy(), np.roll(VOC_MASK, position, axis=1))
    assert int((train[0][1] == 255).sum()) == 2  # the border pixels stay ignored


def test_voc_item_listed_without_its_image_is_one_line_naming_the_list_and_item(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_voc(tmp_path, {"train": ["a", "b"], "val": ["c"]})
    lists = root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
    (lists / "train.txt").write_text("a\nb\nghost\n")
    with pytest.raises(DataError, match=r"train\.txt: line 3: 'ghost' is listed but there is no image ghost\.\*"):
        _data(f"voc:{root}")
    code, out = _check(capsys, f"voc:{root}")
    assert code == 2 and "missing-image" in out and "'ghost'" in out
    assert _check(capsys, f"voc:{root}", "--splits", "val")[0] == 0


def test_cvat_colours_become_the_labelmap_classes_in_order(tmp_path: Path) -> None:
    root = write_cvat(tmp_path / "task", ["frame_000000", "frame_000001"], split="train")
    write_cvat(tmp_path / "task", ["frame_000002"], split="val")
    train = _data(f"cvat:{root}")
    assert train.class_names == ["background", "cat", "dog"]
    for index in range(2):
        np.testing.assert_array_equal(train[index][1].numpy(), np.roll(CVAT_CLASSES, index, axis=0))
    assert len(_data(f"cvat:{root}", split="val")) == 1


def test_cvat_default_split_needs_val_fraction_then_splits_stably(tmp_path: Path) -> None:
    items = [f"frame_{index:06d}" for index in range(12)]
    root = write_cvat(tmp_path / "task", items)
    assert len(_data(f"cvat:{root}")) == 12
    with pytest.raises(DataError, match=r"default\.txt: the export has one split; set data\.val_fraction"):
        _data(f"cvat:{root}", split="val")
    with pytest.raises(DataError, match=r"default\.txt: data\.val_fraction=0\.99 of 12 images leaves none to train on"):
        _data(f"cvat:{root}", val_fraction=0.99)
    settings = {"val_fraction": 0.25, "split_seed": 3}
    train, val = _data(f"cvat:{root}", **settings), _data(f"cvat:{root}", split="val", **settings)
    names = [{Path(data.image_path(i)).stem for i in range(len(data))} for data in (train, val)]
    assert names[0].isdisjoint(names[1]) and names[0] | names[1] == set(items) and names[1]
    assert {Path(path).stem for path in _val_names(root, settings)} == names[1]
    again = _data(f"cvat:{root}", split="val", **settings)
    assert [again.image_path(i) for i in range(len(again))] == [val.image_path(i) for i in range(len(val))]
    assert len(names[1]) == 3  # round(0.25 * 12), exactly
    write_cvat(tmp_path / "task", [*items, "frame_000099"])  # a new image moves at most one held-out image
    grown = _data(f"cvat:{root}", split="val", **settings)
    assert len(names[1] - {Path(grown.image_path(i)).stem for i in range(len(grown))}) <= 1


def _val_names(root: Path, settings: dict) -> list[str]:
    """The assignment the run recorded, found through the note `data check` prints."""
    report = check_dataset(DataSettings(spec=f"cvat:{root}", **settings), ["train"])
    notes = [issue for issue in report.notes if issue.kind == "val-fraction"]
    return json.loads(Path(notes[0].path).read_text())["val"]


def test_cvat_colour_not_in_the_labelmap_is_named_with_the_labelmap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_cvat(tmp_path / "task", ["a", "b"], split="train")
    write_cvat(tmp_path / "task", ["c"], split="val")
    painted = CVAT_CLASSES.copy()
    painted[0, 0] = 3
    write_colour_mask(root / "SegmentationClass" / "b.png", painted,
                      np.array([(0, 0, 0), (250, 50, 83), (36, 179, 83), (1, 2, 3)], dtype=np.uint8))
    code, out = _check(capsys, f"cvat:{root}")
    assert code == 2
    assert f"{root / 'SegmentationClass' / 'b.png'}: colours (1, 2, 3) are not in {root / 'labelmap.txt'}" in out


@pytest.mark.parametrize(("text", "message"), [
    ("background:0,0,0::\ncat:250,50::\n", r"labelmap\.txt line 2: expected 'label:R,G,B::', got 'cat:250,50::'"),
    ("background:0,0,0::\ncat:0,0,0::\n", r"labelmap\.txt: a colour is listed twice"),
    ("# label:color_rgb:parts:actions\n", r"labelmap\.txt: no labels"),
])
def test_cvat_bad_labelmap_is_one_line_naming_it(tmp_path: Path, text: str, message: str) -> None:
    root = write_cvat(tmp_path / "task", ["a"])
    (root / "labelmap.txt").write_text(text)
    with pytest.raises(DataError, match=message):
        _data(f"cvat:{root}")


@pytest.mark.slow
def test_a_one_split_cvat_export_trains_and_the_run_records_the_split(tmp_path: Path) -> None:
    root = write_cvat(tmp_path / "task", [f"frame_{index:06d}" for index in range(8)])
    config = tiny_config(f"data.spec=cvat:{root}", "data.val_fraction=0.3", "data.split_seed=0",
                         "train.duration=2ba", "train.eval_interval=2ba", "train.global_batch_size=2")
    assert build_trainer(config, tmp_path / "run").fit()["step"] == 2
    record = json.loads((tmp_path / "run" / "data-splits.json").read_text())
    assert (record["val_fraction"], record["split_seed"]) == (0.3, 0)
    assert sorted(Path(path).stem for path in record["train"] + record["val"]) == [f"frame_{i:06d}" for i in range(8)]
