"""Forward FLOPs of a model at a given input size, counted on the meta device (no compute, no memory)."""

from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode


def forward_flops(model: nn.Module, height: int, width: int, batch_size: int = 1) -> int:
    """FLOPs (2 per multiply-add) of one forward pass, as ``torch.utils.flop_counter`` counts them.

    The model runs on meta-device stand-ins of its parameters and buffers, so even ResNet-101 at
    512x512 costs milliseconds on a CPU and nothing of the real model is touched; it runs in eval
    mode so a batch of one passes the image-pool BatchNorm.
    """
    stand_ins = {
        name: torch.empty_like(tensor, device="meta")
        for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers())
    }
    images = torch.empty(batch_size, 3, height, width, device="meta")
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            functional_call(model, stand_ins, (images,))
    finally:
        model.train(was_training)
    return counter.get_total_flops()
