"""Confusion-matrix metrics against numbers worked out by hand."""

from __future__ import annotations

import json
import math

import pytest
import torch
from rich.console import Console

from segrecipes.evaluation.metrics import ConfusionMatrix, MetricInputError, format_table

IGNORE = 255

# 5 classes. Labelled pixels (target, prediction): (0,0) (0,1) (1,1) (1,1) (2,2) (2,3) (2,0).
# Class 3 is predicted but never present; class 4 is predicted only on ignored pixels -> absent.
TARGET = torch.tensor([[0, 0, 1, 1, 2], [2, 2, IGNORE, IGNORE, IGNORE]])
PREDICTION = torch.tensor([[0, 1, 1, 1, 2], [3, 0, 4, 4, 0]])
EXPECTED_MATRIX = torch.tensor(
    [
        [1, 1, 0, 0, 0],
        [0, 2, 0, 0, 0],
        [1, 0, 1, 1, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ]
)


def hand_built_metrics():
    confusion = ConfusionMatrix(5)
    confusion.update(PREDICTION, TARGET)
    return confusion


def test_confusion_matrix_counts_labelled_pixels_only():
    confusion = hand_built_metrics()
    assert confusion.matrix.dtype == torch.int64
    assert torch.equal(confusion.matrix, EXPECTED_MATRIX)


def test_metrics_match_hand_computation():
    metrics = hand_built_metrics().compute()
    # unions: c0 = 2+2-1, c1 = 2+3-2, c2 = 3+1-1, c3 = 0+1-0, c4 = 0 (undefined)
    expected_iou = [100 / 3, 200 / 3, 100 / 3, 0.0]
    assert metrics.iou[:4] == pytest.approx(expected_iou)
    assert math.isnan(metrics.iou[4])
    assert metrics.miou == pytest.approx(100 / 3)  # class 3 counts (IoU 0), class 4 does not
    assert metrics.pixel_acc == pytest.approx(400 / 7)
    assert metrics.acc[:3] == pytest.approx([50.0, 100.0, 100 / 3])
    assert math.isnan(metrics.acc[3]) and math.isnan(metrics.acc[4])
    assert metrics.mean_acc == pytest.approx(100 * (1 / 2 + 1 + 1 / 3) / 3)
    # dice = 2 TP / (|target| + |prediction|)
    assert metrics.dice[:4] == pytest.approx([50.0, 80.0, 50.0, 0.0])
    assert metrics.mean_dice == pytest.approx(45.0)
    assert metrics.ade_score == pytest.approx((400 / 7 + 100 / 3) / 2)


def test_to_dict_is_json_safe_and_keyed_by_class_name():
    result = hand_built_metrics().compute(["wall", "floor", "sky", "tree", "car"]).to_dict()
    text = json.dumps(result, allow_nan=False)
    assert json.loads(text)["iou"]["car"] is None  # never present, never predicted: undefined
    assert result["acc"]["tree"] is None
    assert result["iou"]["floor"] == pytest.approx(200 / 3)
    assert result["miou"] == pytest.approx(100 / 3)
    assert list(result) == ["miou", "pixel_acc", "mean_acc", "mean_dice", "ade_score", "iou", "acc", "dice"]
    assert hand_built_metrics().compute().class_names[0] == "class_0"


def test_accumulating_updates_equals_one_update_and_a_brute_force_count():
    generator = torch.Generator().manual_seed(0)
    classes = 4
    target = torch.randint(0, classes, (6, 9, 7), generator=generator)
    target[torch.rand(6, 9, 7, generator=generator) < 0.2] = IGNORE
    prediction = torch.randint(0, classes, (6, 9, 7), generator=generator)

    expected = torch.zeros(classes, classes, dtype=torch.int64)
    for t, p in zip(target.flatten().tolist(), prediction.flatten().tolist()):
        if t != IGNORE:
            expected[t, p] += 1

    whole = ConfusionMatrix(classes)
    whole.update(prediction, target)
    pieces = ConfusionMatrix(classes)
    matrix_storage = pieces.matrix.data_ptr()
    for index in range(6):
        pieces.update(prediction[index], target[index])
    assert torch.equal(whole.matrix, expected)
    assert torch.equal(pieces.matrix, expected)
    assert pieces.matrix.data_ptr() == matrix_storage and pieces.matrix.shape == (classes, classes)
    assert whole.compute() == pieces.compute()


def test_all_ignored_gives_undefined_metrics_not_zero():
    confusion = ConfusionMatrix(3)
    confusion.update(torch.zeros(4, 4, dtype=torch.long), torch.full((4, 4), IGNORE))
    metrics = confusion.compute()
    assert confusion.matrix.sum() == 0
    assert math.isnan(metrics.miou) and math.isnan(metrics.pixel_acc)


def test_all_reduce_without_distributed_is_a_no_op():
    confusion = hand_built_metrics()
    confusion.all_reduce()
    assert torch.equal(confusion.matrix, EXPECTED_MATRIX)


def test_reset_clears_counts():
    confusion = hand_built_metrics()
    confusion.reset()
    assert confusion.matrix.sum() == 0


@pytest.mark.parametrize(
    ("prediction", "target", "message"),
    [
        (torch.tensor([0, 5]), torch.tensor([0, 1]), "prediction has class indices \\[5\\]"),
        (torch.tensor([0, -1]), torch.tensor([0, 1]), "prediction has class indices \\[-1\\]"),
        (torch.tensor([0, 1]), torch.tensor([0, 7]), "target has class indices \\[7\\]"),
        (torch.tensor([0, 1, 2]), torch.tensor([0, 1]), "does not match target shape"),
    ],
)
def test_bad_indices_are_refused(prediction, target, message):
    with pytest.raises(MetricInputError, match=message):
        ConfusionMatrix(5).update(prediction, target)


def test_predictions_on_ignored_pixels_are_not_checked():
    confusion = ConfusionMatrix(2)
    confusion.update(torch.tensor([1, 99]), torch.tensor([1, IGNORE]))
    assert torch.equal(confusion.matrix, torch.tensor([[0, 0], [0, 1]]))


def test_format_table_lists_classes_and_summary():
    metrics = hand_built_metrics().compute(["wall", "floor", "sky", "tree", "car"])
    console = Console(record=True, width=100)
    console.print(format_table(metrics))
    text = console.export_text()
    assert "wall" in text and "car" in text
    assert "66.67" in text  # IoU of class 1
    assert "33.33" in text and "57.14" in text  # mIoU and pixel accuracy
    with pytest.raises(MetricInputError, match="3 class names for 5 classes"):
        hand_built_metrics().compute(["a", "b", "c"])
