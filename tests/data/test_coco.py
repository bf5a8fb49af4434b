"""``coco:PATH``: a COCO JSON written with pycocotools' RLE and real polygons becomes the hand-drawn
masks (category order, background or ignore, smaller area on top, crowds, images without
annotations), cached after the first run; bad JSONs are one line naming the file and the item."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers.exports import COCO_FIRST, COCO_OVERLAP, COCO_THIRD, coco_annotations, write_coco
from helpers.tiny import tiny_args, tiny_config
from segrecipes.cli.main import main
from segrecipes.data import coco
from segrecipes.data.check import check_dataset
from segrecipes.data.errors import DataError
from segrecipes.data.settings import DataSettings
from segrecipes.data.spec import build_raw_dataset
from segrecipes.run import build_trainer

pytest.importorskip("pycocotools")


def _data(root: Path, split: str = "train", **settings: object):
    return build_raw_dataset(DataSettings(spec=f"coco:{root}", **settings), split)


def _labels(dataset) -> list[np.ndarray]:
    return [dataset[index][1].numpy() for index in range(len(dataset))]


def test_masks_follow_category_order_overlap_rule_and_background(tmp_path: Path) -> None:
    train = _data(write_coco(tmp_path))
    assert train.class_names == ["background", "person", "car", "sky"]
    first, bare, third = _labels(train)
    np.testing.assert_array_equal(first, COCO_FIRST)
    np.testing.assert_array_equal(bare, np.zeros((8, 8)))
    np.testing.assert_array_equal(third, COCO_THIRD)
    assert len(_data(tmp_path, "val")) == 1


def test_unannotated_pixels_can_be_ignored_instead(tmp_path: Path) -> None:
    train = _data(write_coco(tmp_path), unannotated="ignore")
    assert train.class_names == ["person", "car", "sky"]
    first, bare, _ = _labels(train)
    np.testing.assert_array_equal(first, np.where(COCO_FIRST == 0, 255, COCO_FIRST - 1))
    assert (bare == 255).all()


def test_rasterized_once_then_read_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_coco(tmp_path)
    expected = _labels(_data(root))

    def refuse(*args: object) -> None:
        raise AssertionError("rasterized again")

    monkeypatch.setattr(coco, "_convert", refuse)
    assert all((a == b).all() for a, b in zip(_labels(_data(root)), expected))
    with pytest.raises(AssertionError, match="rasterized again"):  # another setting, another key
        _data(root, unannotated="ignore")


def test_data_check_reports_overlaps_and_the_findings_with_their_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    annotations = coco_annotations()
    annotations[0]["segmentation"] = [[0, 0, 9.5, 0, 8, 4, 0, 4]]  # past the right edge, cut off
    root = write_coco(tmp_path, [a for a in annotations if a["category_id"] != 3])
    report = check_dataset(f"coco:{root}", ["train"])
    assert report.ok
    notes = {issue.kind: issue.message for issue in report.notes}
    assert notes["overlap"].startswith(f"{COCO_OVERLAP - 6} pixels are covered by more than one annotation")
    assert "categories with no annotation: car" in notes["unused-category"]
    assert "1 polygons reach outside their image (annotations 1)" in notes["outside-image"]
    assert "1 images have no annotation" in notes["no-annotation"]
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "check", f"coco:{root}"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "instances_train2017.json: 4 pixels are covered" in out


def _bad(tmp_path: Path, change) -> Path:
    root = write_coco(tmp_path)
    path = root / "annotations" / "instances_train2017.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return root


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.pop("categories"), r"instances_train2017\.json: not a COCO annotation JSON \(it needs 'images'"),
    (lambda d: d["annotations"][1].update(category_id=99),
     r"instances_train2017\.json: annotation 2 uses category_id 99, which 'categories' does not declare"),
    (lambda d: d["annotations"][0].update(segmentation=[[0, 0, 8, 0]]),
     r"instances_train2017\.json: annotation 1 \(image 1\): a polygon with 2 points; polygons need at least 3"),
    (lambda d: d["annotations"][3].update(image_id=42), r"annotation 4 is on image_id 42, which 'images' lacks"),
    (lambda d: d["images"][1].update(file_name="gone.jpg"),
     r"instances_train2017\.json: image 'gone\.jpg' is not in .*train2017"),
])
def test_bad_input_is_one_line_naming_file_and_item(tmp_path: Path, change, message: str) -> None:
    root = _bad(tmp_path, change)
    with pytest.raises(DataError, match=message) as error:
        _data(root)
    assert "\n" not in str(error.value)


def test_bad_json_refused_by_the_cli_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_coco(tmp_path)
    (root / "annotations" / "instances_train2017.json").write_text('[{"data": {"image": "x.jpg"}}]')
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "check", f"coco:{root}"])
    assert exit_info.value.code == 2
    assert "instances_train2017.json: not a COCO annotation JSON" in capsys.readouterr().err


def test_without_pycocotools_the_error_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_coco(tmp_path)
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    with pytest.raises(DataError, match=r'this export needs pycocotools: pip install "segrecipes\[coco\]"'):
        _data(root)


def test_one_json_is_split_by_val_fraction(tmp_path: Path) -> None:
    root = write_coco(tmp_path, val=False)
    with pytest.raises(DataError, match=r"instances_train2017\.json: the export has one split; set data\.val_f"):
        _data(root, "val")
    train, val = _data(root, val_fraction=0.5), _data(root, "val", val_fraction=0.5)
    assert len(train) + len(val) == 3
    copy = root / "annotations" / "held_out.json"
    copy.write_text((root / "annotations" / "instances_train2017.json").read_text())
    named = _data(root, "val", val_fraction=0.5, coco_val_json="annotations/held_out.json")
    assert len(named) == 3  # a JSON for each split: each used whole


@pytest.mark.slow
def test_a_coco_export_trains_two_steps_and_evaluates(tmp_path: Path) -> None:
    root = write_coco(tmp_path, size=32, annotations=[
        {"id": 1, "image_id": image, "category_id": 7, "iscrowd": 0, "segmentation": [[4, 4, 28, 4, 28, 20, 4, 20]]}
        for image in (1, 3)
    ])
    config = tiny_config(f"data.spec=coco:{root}", "data.crop_size=32", "train.duration=2ba",
                         "train.eval_interval=2ba", "train.global_batch_size=2")
    result = build_trainer(config, None).fit()
    assert result["step"] == 2 and result["miou"] is not None
    assert list(result["iou"]) == ["background", "person", "car", "sky"]


def test_cvat_coco_export_one_json_and_images_by_subset(tmp_path: Path) -> None:
    """CVAT's "COCO 1.0" export: annotations/instances_default.json and images/default/."""
    root = write_coco(tmp_path / "export", val=False)
    (root / "annotations" / "instances_train2017.json").rename(root / "annotations" / "instances_default.json")
    (root / "images").mkdir()
    (root / "train2017").rename(root / "images" / "default")
    train, val = _data(root, val_fraction=0.34), _data(root, "val", val_fraction=0.34)
    assert (len(train), len(val)) == (2, 1)
    assert Path(val.image_path(0)).parent == root / "images" / "default"


def test_one_category_with_unannotated_ignored_is_not_taken_for_binary_masks(tmp_path: Path) -> None:
    """Masks of 0 and 255 here are one class and ignore, as stated, not a 0/255 folder mask misread."""
    annotations = [annotation for annotation in coco_annotations() if annotation["category_id"] == 7]
    root = write_coco(tmp_path, annotations)
    report = check_dataset(DataSettings(spec=f"coco:{root}", unannotated="ignore"), ["train"])
    assert report.ok, report.errors


def test_train_refuses_a_bad_json_before_training_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _bad(tmp_path, lambda d: d["annotations"][1].update(category_id=99))
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", f"coco:{root}", *tiny_args(without=("data.spec",)), "--run-dir", str(tmp_path / "r")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "annotation 2 uses category_id 99, which 'categories' does not declare" in err[0]
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_coco_stuff_json_is_found_and_two_candidates_are_named(tmp_path: Path) -> None:
    root = write_coco(tmp_path)
    annotations = root / "annotations"
    (annotations / "instances_val2017.json").rename(annotations / "stuff_val2017.json")
    (annotations / "captions_train2017.json").write_text("{}")  # not a segmentation JSON: never picked
    assert len(_data(root, "val")) == 1
    (annotations / "stuff_train2017.json").write_text((annotations / "instances_train2017.json").read_text())
    with pytest.raises(DataError, match=r"instances_train2017\.json, stuff_train2017\.json all fit the train split; "
                                        r"choose one with data\.coco_train_json"):
        _data(root)
    assert len(_data(root, coco_train_json="annotations/stuff_train2017.json")) == 3
