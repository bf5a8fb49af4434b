"""``labelstudio:PATH``: a JSON export with brush RLE (Label Studio's documented encoding) and polygons
in percent becomes the hand-drawn masks; bad exports are one line naming the file, task and result."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers.exports import (
    LS_FIRST,
    LS_OVERLAP,
    LS_PNG_MASK,
    LS_THIRD,
    brush_rle,
    ls_result,
    ls_tasks,
    write_labelstudio,
    write_labelstudio_pngs,
)
from segrecipes.cli.main import main
from segrecipes.data.check import check_dataset
from segrecipes.data.errors import DataError
from segrecipes.data.labelstudio import decode_brush
from segrecipes.data.settings import DataSettings
from segrecipes.data.spec import build_raw_dataset

pytest.importorskip("pycocotools")


def _data(root: Path, split: str = "train", **settings: object):
    return build_raw_dataset(DataSettings(spec=f"labelstudio:{root}", **settings), split)


def test_brush_rle_decodes_runs_literals_and_the_alpha_threshold() -> None:
    mask = np.random.default_rng(0).random((5, 7)) < 0.4
    np.testing.assert_array_equal(decode_brush(brush_rle(mask), 5, 7, "here"), mask)
    assert not decode_brush(brush_rle(mask, alpha=100), 5, 7, "here").any()  # faint strokes are not labels
    big = np.ones((300, 300), dtype=bool)  # runs longer than a 16-bit field
    assert decode_brush(brush_rle(big), 300, 300, "here").all()
    with pytest.raises(DataError, match=r"^here: the brush RLE ends early"):
        decode_brush(brush_rle(mask)[:10], 5, 7, "here")
    with pytest.raises(DataError, match=r"^here: the brush RLE holds 140 values, not 4 per pixel of a 8x5 image"):
        decode_brush(brush_rle(mask), 5, 8, "here")


def test_masks_pixel_for_pixel_with_sorted_names_and_background(tmp_path: Path) -> None:
    train = _data(write_labelstudio(tmp_path))
    assert train.class_names == ["background", "car", "person", "road"]
    assert [Path(train.image_path(index)).name for index in range(3)] == ["street.jpg", "empty.jpg", "park.png"]
    first, bare, third = (train[index][1].numpy() for index in range(3))
    np.testing.assert_array_equal(first, LS_FIRST)
    assert (bare == 0).all()
    np.testing.assert_array_equal(third, LS_THIRD)


def test_classes_txt_orders_the_classes_and_unannotated_can_be_ignored(tmp_path: Path) -> None:
    root = write_labelstudio(tmp_path)
    (root / "classes.txt").write_text("road\ncar\nperson\nbicycle\n")
    train = _data(root, unannotated="ignore")
    assert train.class_names == ["road", "car", "person", "bicycle"]
    order = np.array([255, 1, 2, 0], dtype=np.uint8)  # background, car, person, road -> new indices
    np.testing.assert_array_equal(train[0][1].numpy(), order[LS_FIRST])


def test_data_check_reports_the_overlap_and_one_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_labelstudio(tmp_path)
    report = check_dataset(DataSettings(spec=f"labelstudio:{root}", val_fraction=0.4), ["train", "val"])
    assert report.ok and sum(report.pairs.values()) == 3
    notes = {issue.kind: issue.message for issue in report.notes}
    assert notes["overlap"].startswith(f"{LS_OVERLAP} pixels are covered by more than one annotation")
    assert "1 images have no annotation" in notes["no-annotation"]
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "check", f"labelstudio:{root}"])
    assert exit_info.value.code == 2
    assert "the export has one split; set data.val_fraction" in capsys.readouterr().err


def _with(change) -> list[dict]:
    tasks = ls_tasks()
    change(tasks)
    return tasks


@pytest.mark.parametrize(("tasks", "message"), [
    (_with(lambda t: t[0]["annotations"][0]["result"].append(
        ls_result("keypointlabels", "car", {"x": 10, "y": 10}, "k1"))),
     r"\.json: task 1, result 'k1': type 'keypointlabels' is not read \(labelstudio:PATH reads brushlabels and"),
    (_with(lambda t: t[2]["annotations"][1]["result"][0]["value"].update(points=[[0, 0], [50, 50]])),
     r"\.json: task 3, result 'p3': a polygon with 2 points; polygons need at least 3"),
    (_with(lambda t: t[0]["annotations"][0]["result"][0]["value"].update(brushlabels=["road", "car"])),
     r"\.json: task 1, result 'b1': 2 labels; one label per region"),
    (_with(lambda t: t[1]["data"].update(image="/data/upload/1/ffffffff-gone.jpg")),
     r"\.json: image 'ffffffff-gone\.jpg' is not in .*images"),
    ({"images": [], "annotations": [], "categories": []}, r"\.json: not a Label Studio JSON export \(expected a list"),
])
def test_bad_export_is_one_line_naming_file_task_and_result(tmp_path: Path, tasks, message: str) -> None:
    root = write_labelstudio(tmp_path, tasks)
    with pytest.raises(DataError, match=message) as error:
        _data(root)
    assert "\n" not in str(error.value)


def test_a_label_missing_from_classes_txt_names_it(tmp_path: Path) -> None:
    root = write_labelstudio(tmp_path)
    (root / "classes.txt").write_text("road\ncar\n")
    with pytest.raises(DataError, match=r"task 3, result 'p3': label 'person' is not in .*classes\.txt"):
        _data(root)


def test_the_export_file_can_be_named_and_a_folder_must_hold_one(tmp_path: Path) -> None:
    root = write_labelstudio(tmp_path)
    export = next(root.glob("*.json"))
    assert len(_data(export)) == 3
    (root / "second.json").write_text(json.dumps([]))
    with pytest.raises(DataError, match=r"expected one Label Studio JSON export here \(found: project-1"):
        _data(root)


def test_brush_png_export_with_a_json_min_task_list(tmp_path: Path) -> None:
    root = write_labelstudio_pngs(tmp_path)
    train = _data(root)
    assert train.class_names == ["background", "road", "traffic-sign"]  # annotation 12's car is not read
    assert [Path(train.image_path(index)).name for index in range(2)] == ["street.jpg", "empty.jpg"]
    np.testing.assert_array_equal(train[0][1].numpy(), LS_PNG_MASK)
    assert (train[1][1].numpy() == 0).all()
    report = check_dataset(DataSettings(spec=f"labelstudio:{root}", val_fraction=0.5), ["train", "val"])
    notes = {issue.kind: issue.message for issue in report.notes}
    assert report.ok and notes["overlap"].startswith("4 pixels are covered by more than one annotation")
    assert notes["brush-png"].startswith('the masks are 3 PNGs of the "Brush labels to PNG" export (1 of later')


def test_brush_png_labels_follow_classes_txt_even_with_a_dash_in_the_tag(tmp_path: Path) -> None:
    root = write_labelstudio_pngs(tmp_path)
    for path in (root / "masks").glob("*.png"):
        path.rename(path.with_name(path.name.replace("-tag-", "-brush-tag-")))
    (root / "classes.txt").write_text("traffic-sign\nroad\n")
    train = _data(root, unannotated="ignore")
    assert train.class_names == ["traffic-sign", "road"]
    np.testing.assert_array_equal(train[0][1].numpy(), np.array([255, 1, 0], dtype=np.uint8)[LS_PNG_MASK])


@pytest.mark.parametrize(("change", "message"), [
    (lambda root: (root / "masks" / "task-1-annotation-11-by-ann@lab.org-tag-road-0.png").rename(
        root / "masks" / "task-9-annotation-91-by-ann@lab.org-tag-road-0.png"),
     r"task-9-annotation-91-by-ann@lab\.org-tag-road-0\.png: task 9 is not in .*-min\.json \(export the JSON of"),
    (lambda root: (root / "classes.txt").write_text("road\n"),
     r"tag-traffic-sign-0\.png: label 'traffic-sign' is not in .*classes\.txt"),
    (lambda root: (root / "masks" / "task-1-annotation-11-by-ann@lab.org-tag-road-1.png").write_bytes(b"no png"),
     r"tag-road-1\.png: not a readable PNG"),
    (lambda root: (root / "project-1-at-2026-12-07-min.json").write_text('[{"id": 1}]'),
     r"-min\.json: not a Label Studio JSON export \(expected a list of tasks, each with 'data' or, as JSON-MIN"),
])
def test_bad_brush_png_export_is_one_line_naming_the_file(tmp_path: Path, change, message: str) -> None:
    root = write_labelstudio_pngs(tmp_path)
    change(root)
    with pytest.raises(DataError, match=message) as error:
        _data(root)
    assert "\n" not in str(error.value)
