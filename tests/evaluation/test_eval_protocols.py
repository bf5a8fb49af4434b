"""The reference and standard protocols: what is resized, at which size it is scored, batching."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from helpers.eval_fakes import IGNORE, OracleModel, PixelModel, RecordingModel, block_dataset, random_dataset
from PIL import Image
from torch import nn

from segrecipes.evaluation.evaluate import EvaluationError, evaluate, standard_size
from segrecipes.evaluation.options import InferenceConfigError, InferenceOptions

CLASSES = 5


class ConstantModel(nn.Module):
    """Predicts class 0 everywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(images.shape[0], CLASSES, *images.shape[-2:])
        logits[:, 0] = 1.0
        return logits + self.anchor


@pytest.mark.parametrize(
    ("height", "width", "short", "long", "expected"),
    [
        (512, 683, 512, 2048, (512, 683)),
        (375, 500, 512, 2048, (512, 683)),  # 500 * 512 / 375 = 682.67
        (100, 1000, 512, 2048, (205, 2048)),  # long side capped: scale 2.048
        (64, 96, 32, 2048, (32, 48)),
    ],
)
def test_standard_size_keeps_aspect_and_caps_the_long_side(height, width, short, long, expected):
    assert standard_size(height, width, short, long) == expected


def record_scored():
    shapes: list[tuple[int, int]] = []
    masks: list[torch.Tensor] = []

    def on_scored(prediction: torch.Tensor, mask: torch.Tensor) -> None:
        assert prediction.shape == mask.shape
        shapes.append(tuple(mask.shape))
        masks.append(mask.clone())

    return shapes, masks, on_scored


SIZES = [(64, 96), (96, 64), (64, 96), (64, 64), (80, 48)]


def test_standard_protocol_scores_the_untouched_mask_at_the_original_size():
    dataset = random_dataset(SIZES, CLASSES)
    shapes, masks, on_scored = record_scored()
    recorder = RecordingModel(PixelModel(CLASSES))
    evaluate(recorder, dataset, InferenceOptions(protocol="standard", size=32, batch_size=1), on_scored=on_scored)
    assert shapes == SIZES
    for scored, (_, original) in zip(masks, dataset.samples):
        assert torch.equal(scored, original)
    # the model sees the short side resized to 32
    assert [tuple(x.shape[-2:]) for x in recorder.inputs] == [(32, 48), (48, 32), (32, 48), (32, 32), (53, 32)]


def test_standard_protocol_batches_images_of_the_same_size_only():
    dataset = random_dataset(SIZES, CLASSES)
    shapes, _, on_scored = record_scored()
    recorder = RecordingModel(PixelModel(CLASSES))
    evaluate(recorder, dataset, InferenceOptions(protocol="standard", size=32, batch_size=4), on_scored=on_scored)
    assert [x.shape[0] for x in recorder.inputs] == [2, 1, 1, 1]  # (64,96) x2, (96,64), (64,64), then (80,48)
    assert Counter(shapes) == Counter(SIZES)


def test_reference_protocol_scores_at_eval_size_in_full_batches():
    dataset = random_dataset(SIZES, CLASSES)
    shapes, _, on_scored = record_scored()
    recorder = RecordingModel(PixelModel(CLASSES))
    evaluate(recorder, dataset, InferenceOptions(protocol="reference", size=40, batch_size=4), on_scored=on_scored)
    assert shapes == [(40, 40)] * len(SIZES)
    assert [tuple(x.shape) for x in recorder.inputs] == [(4, 3, 40, 40), (1, 3, 40, 40)]
    assert all(recorder.inference_mode)


def test_reference_protocol_resizes_the_mask_like_pil_nearest():
    """The reference recipe resized PIL masks; PIL's nearest samples pixel centres."""
    dataset = random_dataset([(75, 100)], CLASSES)
    _, masks, on_scored = record_scored()
    evaluate(PixelModel(CLASSES), dataset, InferenceOptions(protocol="reference", size=64), on_scored=on_scored)
    original = dataset.samples[0][1].to(torch.uint8).numpy()
    expected = np.array(Image.fromarray(original).resize((64, 64), Image.NEAREST))
    assert torch.equal(masks[0], torch.from_numpy(expected).long())


@pytest.mark.parametrize("protocol", ["reference", "standard"])
def test_an_oracle_scores_100_percent(protocol):
    dataset = block_dataset([(64, 96), (96, 64), (64, 96), (64, 64)], CLASSES)
    metrics = evaluate(OracleModel(dataset), dataset, InferenceOptions(protocol=protocol, size=32, batch_size=3))
    assert metrics.miou == pytest.approx(100.0)
    assert metrics.pixel_acc == pytest.approx(100.0)


def test_standard_protocol_with_constant_predictions_matches_a_hand_count():
    dataset = random_dataset([(64, 96), (50, 70)], CLASSES)
    masks = [mask for _, mask in dataset.samples]
    labelled = sum(int((m != IGNORE).sum()) for m in masks)
    class_zero = sum(int((m == 0).sum()) for m in masks)
    present = {c for m in masks for c in m.unique().tolist() if c != IGNORE}
    metrics = evaluate(ConstantModel(), dataset, InferenceOptions(protocol="standard", size=32))
    # every labelled pixel is predicted 0: IoU_0 = |class 0| / labelled, the other present classes 0
    assert metrics.pixel_acc == pytest.approx(100 * class_zero / labelled)
    assert metrics.iou[0] == pytest.approx(100 * class_zero / labelled)
    assert metrics.miou == pytest.approx(100 * class_zero / labelled / len(present))


def test_evaluation_restores_training_mode_and_is_independent_of_batching_and_workers():
    dataset = random_dataset(SIZES, CLASSES)
    model = PixelModel(CLASSES).train()
    one_by_one = evaluate(model, dataset, InferenceOptions(protocol="standard", size=32, batch_size=1))
    assert model.training
    batched = evaluate(model, dataset, InferenceOptions(protocol="standard", size=32, batch_size=3), num_workers=2)
    assert batched.to_dict() == one_by_one.to_dict()


def test_tta_and_sliding_window_options_reach_the_model():
    dataset = random_dataset([(64, 96)], CLASSES)
    recorder = RecordingModel(PixelModel(CLASSES))
    options = InferenceOptions(protocol="standard", size=32, tta="ms-flip", scales=(1.0, 2.0), mode="slide",
                               crop_size=40, stride=30)
    evaluate(recorder, dataset, options)
    shapes = Counter(tuple(x.shape[-2:]) for x in recorder.inputs)
    # scale 1: 32x48, shorter than the window: windows of 32x40 at columns 0 and 8
    # scale 2: 64x96 -> rows 0, 24 x columns 0, 30, 56 (6 windows); every view also flipped
    assert shapes == Counter({(32, 40): 2 * 2, (40, 40): 6 * 2})


def test_bad_protocol_and_samples_are_refused():
    dataset = random_dataset([(16, 16)], CLASSES)
    with pytest.raises(InferenceConfigError, match="eval.protocol: unknown value 'zoo'"):
        evaluate(PixelModel(CLASSES), dataset, InferenceOptions(protocol="zoo"))
    dataset.samples[0] = (dataset.samples[0][0], torch.zeros(8, 8, dtype=torch.long))
    with pytest.raises(EvaluationError, match=r"image \(3, 16, 16\) and mask \(8, 8\)"):
        evaluate(PixelModel(CLASSES), dataset, InferenceOptions(protocol="standard", size=16))
