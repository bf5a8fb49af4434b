"""Sliding-window inference and test-time augmentation against closed-form expectations."""

from __future__ import annotations

import pytest
import torch
from helpers.eval_fakes import PixelModel, RecordingModel
from torch import nn

from segrecipes.evaluation.inference import infer_logits, predict_probs
from segrecipes.evaluation.options import InferenceConfigError, InferenceOptions

CLASSES = 4


class GlobalColourModel(nn.Module):
    """Per-pixel logits plus a term from the image's mean colour: sees the whole input at once."""

    def __init__(self) -> None:
        super().__init__()
        self.pixel = PixelModel(CLASSES, seed=1)
        self.colour = PixelModel(CLASSES, seed=2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.pixel(images) + self.colour(images.mean(dim=(2, 3), keepdim=True))


class WindowMeanModel(nn.Module):
    """Every output pixel is the mean of the input window (channel 0), for every class."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        mean = images[:, :1].mean(dim=(2, 3), keepdim=True)
        return mean.expand(-1, CLASSES, *images.shape[-2:])


class PositionModel(nn.Module):
    """Logits that grow from left to right: not flip-equivariant."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        columns = torch.linspace(0, 3, images.shape[-1])
        ramp = torch.stack([columns * k for k in range(CLASSES)])  # (C, W)
        return images[:, :1] + ramp[None, :, None, :]


def image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(seed))


def test_slide_equals_whole_when_one_window_covers_the_image():
    model, images = GlobalColourModel(), image(24, 32)
    slide = infer_logits(model, images, mode="slide", crop_size=(24, 32), stride=(16, 16))
    assert torch.equal(slide, infer_logits(model, images))


def test_slide_equals_whole_for_a_per_pixel_model_on_a_larger_image():
    model, images = PixelModel(CLASSES), image(37, 53)
    slide = infer_logits(model, images, mode="slide", crop_size=16, stride=11)
    assert slide.shape == (2, CLASSES, 37, 53)
    torch.testing.assert_close(slide, infer_logits(model, images), rtol=0, atol=1e-5)


def test_slide_windows_step_by_stride_and_the_last_is_flush_with_the_border():
    recorder, images = RecordingModel(PixelModel(CLASSES)), image(37, 20)
    infer_logits(recorder, images, mode="slide", crop_size=16, stride=11)
    # rows: 0, 11, then 37 - 16 = 21 (flush); columns: 0, then 20 - 16 = 4 (flush)
    corners = [(top, left) for top in (0, 11, 21) for left in (0, 4)]
    assert len(recorder.inputs) == len(corners)
    for crop, (top, left) in zip(recorder.inputs, corners):
        assert torch.equal(crop, images[:, :, top : top + 16, left : left + 16])


def test_slide_averages_overlapping_logits():
    images = torch.zeros(1, 3, 8, 12)
    images[:, 0, :, 8:] = 12.0
    logits = infer_logits(WindowMeanModel(), images, mode="slide", crop_size=8, stride=4)
    # windows: columns 0-7 (mean 0) and 4-11 (mean 12 * 4/8 = 6)
    expected = torch.tensor([0.0] * 4 + [3.0] * 4 + [6.0] * 4).expand(1, CLASSES, 8, 12)
    torch.testing.assert_close(logits, expected)


def test_an_image_smaller_than_the_window_runs_as_one_smaller_window_like_mmseg():
    """Bug: the image was zero-padded to the window, which changed the logits of any model that looks
    beyond a pixel (the padding entered its global context)."""
    recorder, images = RecordingModel(GlobalColourModel()), image(10, 13)
    logits = infer_logits(recorder, images, mode="slide", crop_size=16, stride=11)
    assert [tuple(x.shape[-2:]) for x in recorder.inputs] == [(10, 13)]
    assert torch.equal(logits, infer_logits(GlobalColourModel(), images))


def test_a_side_shorter_than_the_window_is_covered_by_windows_of_its_length():
    recorder, images = RecordingModel(PixelModel(CLASSES)), image(10, 30)
    infer_logits(recorder, images, mode="slide", crop_size=16, stride=11)
    # rows: one window of all 10 rows; columns: 0, 11, then 30 - 16 = 14 (flush)
    assert [tuple(x.shape[-2:]) for x in recorder.inputs] == [(10, 16)] * 3
    for crop, left in zip(recorder.inputs, (0, 11, 14)):
        assert torch.equal(crop, images[:, :, :, left : left + 16])


def test_flip_on_a_flip_equivariant_model_changes_nothing():
    model, images = PixelModel(CLASSES), image(12, 18)
    none = predict_probs(model, images, (12, 18), InferenceOptions(tta="none"))
    flip = predict_probs(model, images, (12, 18), InferenceOptions(tta="flip"))
    torch.testing.assert_close(flip, none, rtol=0, atol=1e-6)
    torch.testing.assert_close(none.sum(dim=1), torch.ones(2, 12, 18))


def test_flip_averages_probabilities_of_the_image_and_its_unflipped_mirror():
    model, images = PositionModel(), image(6, 10)
    direct = model(images).softmax(dim=1)
    mirrored = model(images.flip(-1)).flip(-1).softmax(dim=1)
    probs = predict_probs(model, images, (6, 10), InferenceOptions(tta="flip"))
    assert not torch.allclose(direct, mirrored, atol=1e-3)
    torch.testing.assert_close(probs, (direct + mirrored) / 2)


def test_ms_flip_visits_every_scale_of_the_base_size_with_and_without_flip():
    recorder = RecordingModel(PixelModel(CLASSES))
    options = InferenceOptions(tta="ms-flip", scales=(0.5, 1.0, 1.5))
    probs = predict_probs(recorder, image(7, 9), (7, 9), options, base_size=(20, 30))
    shapes = [tuple(x.shape[-2:]) for x in recorder.inputs]
    assert shapes == [(10, 15), (10, 15), (20, 30), (20, 30), (30, 45), (30, 45)]
    assert torch.equal(recorder.inputs[3], recorder.inputs[2].flip(-1))
    assert probs.shape == (2, CLASSES, 7, 9)


def test_ms_flip_equals_single_scale_when_the_model_ignores_scale():
    constant = torch.ones(1, 3, 16, 24) * torch.tensor([0.3, -1.2, 0.7]).view(1, 3, 1, 1)
    for model in (PixelModel(CLASSES), GlobalColourModel()):
        single = predict_probs(model, constant, (32, 48), InferenceOptions(tta="none"))
        multi = predict_probs(model, constant, (32, 48), InferenceOptions(tta="ms-flip"))
        assert multi.shape == (1, CLASSES, 32, 48)
        torch.testing.assert_close(multi, single, rtol=0, atol=1e-6)


def test_logits_are_resized_to_the_output_size_before_the_softmax():
    """A 2x2 logit map upsampled to 4x4 then soft-maxed: check one blended pixel by hand."""

    class Fixed(nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            logits = torch.zeros(1, 2, 2, 2)
            logits[0, 0, :, 0] = 4.0  # class 0 strong on the left column
            return logits

    probs = predict_probs(Fixed(), torch.zeros(1, 3, 2, 2), (4, 4))
    # output column 1 samples source x = (1 + 0.5) / 2 - 0.5 = 0.25: logit0 = 0.75 * 4 = 3
    expected = torch.tensor([3.0, 0.0]).softmax(0)
    torch.testing.assert_close(probs[0, :, 0, 1], expected)


def test_autocast_runs_and_returns_float32_probabilities():
    model, images = PixelModel(CLASSES), image(8, 8)
    probs = predict_probs(model, images, (8, 8), amp_dtype=torch.bfloat16)
    assert probs.dtype == torch.float32
    torch.testing.assert_close(probs, predict_probs(model, images, (8, 8)), rtol=0, atol=2e-2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "tiles"}, "unknown inference mode"),
        ({"mode": "slide", "crop_size": 8, "stride": 9}, "larger than crop_size"),
        ({"mode": "slide", "crop_size": 0}, "crop_size must be a positive"),
        ({"num_classes": CLASSES + 1}, "the model predicts 4 classes, the data has 5"),
    ],
)
def test_bad_inference_settings_are_refused(kwargs, message):
    with pytest.raises(InferenceConfigError, match=message):
        infer_logits(PixelModel(CLASSES), image(8, 8), **kwargs)


def test_unknown_tta_is_refused():
    with pytest.raises(InferenceConfigError, match="eval.tta: unknown value 'rotate'"):
        predict_probs(PixelModel(CLASSES), image(8, 8), (8, 8), InferenceOptions(tta="rotate"))
