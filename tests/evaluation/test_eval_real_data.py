"""Both protocols on real data: ADE20k samples scored at their original sizes, CamVid val end to end."""

from __future__ import annotations

import pytest
import torch

from segrecipes.data.settings import DataSettings
from segrecipes.data.spec import build_raw_dataset
from segrecipes.evaluation.evaluate import evaluate
from segrecipes.evaluation.options import InferenceOptions
from segrecipes.models import DeepLabV3Plus


def _random_model(num_classes: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return DeepLabV3Plus("resnet18", num_classes, output_stride=16, head_channels=32).eval()


def test_standard_protocol_scores_ade20k_samples_at_original_size(ade20k_root) -> None:
    raw = build_raw_dataset(DataSettings(spec=f"ade20k:{ade20k_root}"), "val")
    original = [tuple(raw[i][1].shape) for i in range(len(raw))]
    scored: list[tuple[int, int]] = []
    metrics = evaluate(_random_model(150), raw, InferenceOptions(protocol="standard", size=128),
                       on_scored=lambda prediction, mask: scored.append(tuple(prediction.shape)))
    assert scored == original and len(set(original)) > 1  # the samples have different sizes
    assert len(metrics.iou) == 150 and metrics.class_names[0] == "wall"

    reference: list[tuple[int, int]] = []
    evaluate(_random_model(150), raw, InferenceOptions(protocol="reference", size=128),
             on_scored=lambda prediction, mask: reference.append(tuple(prediction.shape)))
    assert reference == [(128, 128)] * len(raw)


@pytest.mark.parametrize("protocol", ["reference", "standard"])
def test_both_protocols_on_camvid_val(camvid_root, protocol) -> None:
    raw = build_raw_dataset(DataSettings(spec=f"camvid:{camvid_root}"), "val")
    assert len(raw) == 101
    shapes: set[tuple[int, int]] = set()
    metrics = evaluate(_random_model(11), raw, InferenceOptions(protocol=protocol, size=64, batch_size=16),
                       on_scored=lambda prediction, mask: shapes.add(tuple(prediction.shape)))
    assert shapes == ({(64, 64)} if protocol == "reference" else {(360, 480)})
    assert len(metrics.iou) == 11 and metrics.class_names == tuple(raw.class_names)
