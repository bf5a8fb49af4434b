"""What each evaluation leaves behind: per-class rows that match the confusion matrix, ``best.pt``
chosen by ``train.best_metric`` (a summary metric or one class's IoU), and early stopping."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from segrecipes import SGDW, SegmentationLoss, Trainer, TrainSettings
from segrecipes.data import AugmentedDataset, SyntheticShapes, TrainTransform
from segrecipes.engine.checkpoint import load_checkpoint
from segrecipes.errors import ConfigError
from segrecipes.evaluation.evaluate import evaluate
from segrecipes.evaluation.metrics import ConfusionMatrix

CLASSES = 6


class PixelNet(nn.Module):
    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, hidden, 3, padding=1), nn.ReLU())
        self.classifier = nn.Conv2d(hidden, CLASSES, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images))


def _trainer(tmp_path, lr: float = 0.05, **settings) -> Trainer:
    torch.manual_seed(0)
    model = PixelNet()
    values = {"duration": "8ba", "global_batch_size": 4, "eval_interval": "1ba", "checkpoint_interval": None,
              "progress": "none", **settings}
    train = AugmentedDataset(SyntheticShapes(16, 16), TrainTransform(16, scale_range=(1.0, 1.0)))
    return Trainer(model, SegmentationLoss.named("ce"), SGDW(model.parameters(), lr=lr, momentum=0.9), train,
                   TrainSettings(**values), val_data=SyntheticShapes(4, 16, split="val"), run_dir=tmp_path / "run")


def _evaluations(run_dir) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [row for row in rows if "miou" in row]


@pytest.mark.slow
def test_per_class_rows_in_metrics_jsonl_match_a_hand_made_confusion_matrix(tmp_path) -> None:
    trainer = _trainer(tmp_path, duration="3ba")
    trainer.fit()
    last = _evaluations(tmp_path / "run")[-1]
    matrix = torch.zeros(CLASSES, CLASSES, dtype=torch.float64)

    def count(prediction: torch.Tensor, mask: torch.Tensor) -> None:
        keep = mask != 255
        for target, predicted in zip(mask[keep].tolist(), prediction[keep].tolist()):
            matrix[target, predicted] += 1

    evaluate(trainer.eval_model(), trainer.val_data, trainer.inference, on_scored=count)
    names = trainer.class_names
    for index, name in enumerate(names):
        hit, in_target, in_prediction = matrix[index, index], matrix[index].sum(), matrix[:, index].sum()
        union = in_target + in_prediction - hit
        expected_iou = None if union == 0 else float(100 * hit / union)
        expected_acc = None if in_target == 0 else float(100 * hit / in_target)
        for key, expected in (("iou", expected_iou), ("acc", expected_acc)):
            got = last[key][name]
            assert (got is None) == (expected is None), (key, name)
            if expected is not None:
                assert got == pytest.approx(expected, abs=1e-9), (key, name)
    valid = [value for value in last["iou"].values() if value is not None]
    assert last["miou"] == pytest.approx(sum(valid) / len(valid))
    assert {"mean_acc", "mean_dice", "pixel_acc"} <= last.keys()


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["miou", "iou/background", "mdice"])
def test_best_checkpoint_is_the_evaluation_with_the_highest_best_metric(tmp_path, metric: str) -> None:
    trainer = _trainer(tmp_path, best_metric=metric)
    summary = trainer.fit()
    rows = _evaluations(tmp_path / "run")
    kind, _, name = metric.partition("/")
    values = [row[kind][name] if name else row[{"mdice": "mean_dice"}.get(kind, kind)] for row in rows]
    best_step = rows[max(range(len(rows)), key=lambda i: (values[i], -i))]["step"]  # the first of the highest
    best = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert best["clock"]["step"] == best_step and best["best_metric"] == metric
    assert summary["best_metric"] == metric and summary["best_value"] == pytest.approx(max(values))
    assert len(set(values)) > 1  # the metric moved, so the choice meant something


@pytest.mark.slow
def test_early_stopping_ends_a_run_that_stopped_improving(tmp_path, capsys) -> None:
    # lr 1e-9: the predictions never change, so no evaluation after the first is better
    trainer = _trainer(tmp_path, lr=1e-9, duration="20ba", eval_interval="2ba", early_stop_patience=2,
                       progress="plain")
    summary = trainer.fit()
    assert summary["step"] == 6 and summary["stopped_early"] is True  # best at 2, no better at 4 and 6
    assert [row["step"] for row in _evaluations(tmp_path / "run")] == [2, 4, 6]
    assert "early stop at step 6: 2 evaluations without a better miou" in capsys.readouterr().out
    # resuming the stopped run neither trains nor logs again, and says why
    resumed = _trainer(tmp_path, lr=1e-9, duration="20ba", eval_interval="2ba", early_stop_patience=2,
                       progress="plain")
    resumed.load_state_dict(trainer.state_dict())
    again = resumed.fit()
    assert again["step"] == 6 and again["miou"] == pytest.approx(summary["miou"])
    assert [row["step"] for row in _evaluations(tmp_path / "run")] == [2, 4, 6]
    assert "stopped early at step 6; raise train.early_stop_patience" in capsys.readouterr().out


def test_a_best_metric_that_names_no_class_is_refused_when_the_trainer_is_built(tmp_path) -> None:
    with pytest.raises(ConfigError, match="train.best_metric: metric 'iou/Car': no class 'Car'"):
        _trainer(tmp_path, best_metric="iou/Car")
    with pytest.raises(ConfigError, match="unknown metric 'mlou'"):
        _trainer(tmp_path, best_metric="mlou")


def test_worst_classes_leave_out_classes_never_seen() -> None:
    confusion = ConfusionMatrix(3)
    confusion.update(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1]))  # class 2 never occurs
    metrics = confusion.compute(["a", "b", "c"])
    assert [name for name, _ in metrics.worst(3)] == ["a", "b"]
    assert metrics.value("iou/a") == pytest.approx(50.0) and math.isnan(metrics.value("iou/c"))
    assert metrics.value("macc") == metrics.mean_acc
