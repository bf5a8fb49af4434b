"""Sample predictions: a fixed set of validation images, the same at every evaluation and after a
resume, rendered as image / ground truth / prediction into the run folder and TensorBoard."""

from __future__ import annotations

import pytest
import torch
from helpers.tiny import tiny_config
from torchvision.io import read_image

from segrecipes.engine.checkpoint import latest_checkpoint
from segrecipes.evaluation.overlay import class_palette, render_comparison
from segrecipes.evaluation.samples import choose_samples
from segrecipes.run import build_trainer


def test_samples_depend_only_on_the_seed_and_the_dataset_size() -> None:
    assert choose_samples(50, 8, 42) == choose_samples(50, 8, 42)
    assert choose_samples(50, 8, 42) != choose_samples(50, 8, 43)
    assert choose_samples(5, 8, 42) == [0, 1, 2, 3, 4]  # fewer images than asked: all of them
    assert choose_samples(50, 0, 42) == []


def test_comparison_panels_show_the_image_the_truth_and_the_prediction() -> None:
    image = torch.full((3, 4, 6), 100, dtype=torch.uint8)
    truth = torch.tensor([[0] * 6, [1] * 6, [255] * 6, [1] * 6])
    prediction = torch.ones(4, 6, dtype=torch.long)
    panel = render_comparison(image, truth, prediction, ["a", "b"])
    palette = class_palette(2).long()
    assert panel.shape[0] == 3 and panel.shape[2] > 18
    assert torch.equal(panel[:, :4, :6], image)  # the bare image
    expected = ((100 * 0.5 + palette[0] * 0.5).round()).to(torch.uint8)
    assert torch.equal(panel[:, 0, 6], expected)  # truth row 0 is class a
    assert torch.equal(panel[:, 2, 6], image[:, 2, 0])  # an ignored pixel shows the image
    assert torch.equal(panel[:, 0, 12], ((100 * 0.5 + palette[1] * 0.5).round()).to(torch.uint8))  # predicted b


@pytest.mark.slow
def test_the_same_samples_are_rendered_at_every_evaluation_and_after_a_resume(tmp_path) -> None:
    overrides = ("data.synthetic_val_size=6", "train.log_images=3", "train.eval_interval=2ba",
                 "train.checkpoint_interval=2ba")
    run_dir = tmp_path / "run"
    build_trainer(tiny_config(*overrides, "train.duration=4ba"), run_dir).fit()
    _, state = latest_checkpoint(run_dir)
    build_trainer(tiny_config(*overrides, "train.duration=6ba", "schedule.name=constant"), run_dir,
                  resume=state).fit()
    folders = sorted((run_dir / "samples").iterdir())
    assert [folder.name for folder in folders] == ["step-2", "step-4", "step-6"]
    names = [sorted(path.name for path in folder.iterdir()) for folder in folders]
    expected = [f"sample-{index}.png" for index in choose_samples(6, 3, 42)]
    assert names == [expected] * 3
    first = read_image(str(folders[0] / expected[0]))
    assert first.shape[0] == 3 and first.shape[1] >= 32 and first.shape[2] > 3 * 32  # 32x32 panels + a legend


def test_large_samples_are_scaled_down_labels_by_nearest() -> None:
    from segrecipes.evaluation.samples import MAX_SIDE, _fit

    image = torch.zeros(3, 1024, 2048, dtype=torch.uint8)
    mask = torch.zeros(1024, 2048, dtype=torch.long)
    mask[:, 1024:] = 3
    small_image, small_mask, small_prediction = _fit(image, mask, mask.clone())
    assert small_image.shape == (3, 256, MAX_SIDE) and small_mask.shape == (256, MAX_SIDE)
    assert set(small_mask.unique().tolist()) == {0, 3} and torch.equal(small_mask, small_prediction)
