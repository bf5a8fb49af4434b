"""The confusion matrix as files: counts that add up to the labelled pixels, class names, the heatmap,
the largest confusions (hand-computed), from ``segrecipes eval`` and from the end of training."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from helpers.tiny import tiny_config

from segrecipes.cli.main import main
from segrecipes.evaluation.confusion import top_confusions, write_confusion
from segrecipes.evaluation.metrics import ConfusionMatrix
from segrecipes.run import build_trainer, validation_data

PNG = b"\x89PNG\r\n\x1a\n"


def _read_csv(path) -> tuple[list[str], list[list[int]]]:
    with open(path, newline="") as handle:
        header, *rows = list(csv.reader(handle))
    assert header[0] == "true \\ predicted" and [row[0] for row in rows] == header[1:]
    return header[1:], [[int(value) for value in row[1:]] for row in rows]


def test_top_confusions_are_shares_of_the_true_class_hand_computed(tmp_path) -> None:
    confusion = ConfusionMatrix(3)
    # true a: 6 pixels (4 a, 2 b); true b: 4 pixels (1 a, 3 b); true c: 2 pixels, both predicted a; 255 ignored
    target = torch.tensor([0] * 6 + [1] * 4 + [2] * 2 + [255])
    prediction = torch.tensor([0, 0, 0, 0, 1, 1, 0, 1, 1, 1, 0, 0, 2])
    confusion.update(prediction, target)
    metrics = confusion.compute(["a", "b", "c"])
    found = top_confusions(metrics, 5)
    assert [(true, predicted) for true, predicted, _ in found] == [("c", "a"), ("a", "b"), ("b", "a")]
    assert [share for _, _, share in found] == pytest.approx([100.0, 100 * 2 / 6, 100 * 1 / 4])
    paths = write_confusion(metrics, tmp_path)
    names, counts = _read_csv(paths["csv"])
    assert names == ["a", "b", "c"] and counts == [[4, 2, 0], [1, 3, 0], [2, 0, 0]]
    assert paths["png"].read_bytes()[:8] == PNG


@pytest.mark.slow
def test_training_and_eval_write_confusion_matrices_that_sum_to_the_labelled_pixels(tmp_path, capsys) -> None:
    config = tiny_config("data.synthetic_val_size=3")
    run_dir = tmp_path / "run"
    trainer = build_trainer(config, run_dir)
    trainer.fit()
    val = validation_data(config)
    labelled = sum(int((mask != val.ignore_index).sum()) for _, mask in (val[i] for i in range(len(val))))
    names, counts = _read_csv(run_dir / "confusion.csv")
    assert names == list(val.class_names) and sum(map(sum, counts)) == labelled
    assert counts == trainer.evaluate().confusion.tolist()  # the final evaluation's matrix
    assert (run_dir / "confusion.png").read_bytes()[:8] == PNG

    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--checkpoint", str(run_dir), "--protocol", "standard", "--json"])
    assert exit_info.value.code == 0
    record = json.loads(capsys.readouterr().out)
    matrix = record["confusion_matrix"]
    assert matrix["class_names"] == list(val.class_names)
    assert sum(map(sum, matrix["counts"])) == labelled  # the standard protocol scores the original masks
    assert _read_csv(run_dir / "eval" / "confusion.csv") == (matrix["class_names"], matrix["counts"])

    # on a log (not a terminal) eval prints its table and where the files went, and no progress bar
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--checkpoint", str(run_dir), "--out", str(tmp_path / "elsewhere")])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "evaluating" not in printed and f"{tmp_path / 'elsewhere' / 'confusion.csv'}" in printed.replace("\n", "")
