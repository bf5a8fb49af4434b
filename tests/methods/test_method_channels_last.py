"""channels_last changes memory layout only: same outputs as the contiguous model."""

from __future__ import annotations

import copy

import torch
from torch import nn

from segrecipes.methods import StepContext
from segrecipes.methods.channels_last import ChannelsLast


def test_model_and_batch_become_channels_last_with_equal_outputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()
    reference = copy.deepcopy(model)
    images, target = torch.randn(2, 3, 9, 11), torch.randint(0, 4, (2, 9, 11))

    hook = ChannelsLast()
    context = StepContext(1, 0, 0.0, model)
    converted = hook.prepare_model(context, model)
    new_images, new_target = hook.transform_batch(context, images, target)

    assert converted is model
    conv_weights = [p for p in converted.parameters() if p.dim() == 4]
    assert len(conv_weights) == 2
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in conv_weights)
    assert not converted[0].weight.is_contiguous()  # the 3x3 weight really changed layout
    assert new_images.is_contiguous(memory_format=torch.channels_last) and not new_images.is_contiguous()
    assert new_target is target
    with torch.no_grad():
        output = converted(new_images)
        torch.testing.assert_close(output, reference(images), atol=1e-5, rtol=1e-5)
    assert output.is_contiguous(memory_format=torch.channels_last)
