"""A model's buffers (BatchNorm statistics and counters), saved before a step and put back after a
skipped or failed one, on the device.

A step whose forward pass overflowed leaves non-finite running statistics behind even though the
optimizer skipped it. Restoring them needs a choice per step between the saved and the current
values; ``torch.where`` over one flat copy per dtype makes it without reading the skip flag on the host.
"""

from __future__ import annotations

import torch
from torch import nn


class BufferGuard:
    """``guard.save()`` before a step; ``guard.restore_if(skipped)`` after it (``skipped``: 0-dim bool
    tensor), or ``guard.restore()`` after a step that raised."""

    def __init__(self, model: nn.Module) -> None:
        groups: dict[torch.dtype, list[torch.Tensor]] = {}
        for buffer in model.buffers():
            groups.setdefault(buffer.dtype, []).append(buffer)
        self.groups = list(groups.values())
        self._saved: list[torch.Tensor] = []

    def save(self) -> None:
        self._saved = [_flat(buffers) for buffers in self.groups]

    def restore(self) -> None:
        for buffers, saved in zip(self.groups, self._saved):
            torch._foreach_copy_(buffers, _split(saved, buffers))

    def restore_if(self, skipped: torch.Tensor) -> None:
        for buffers, saved in zip(self.groups, self._saved):
            current = _flat(buffers)
            chosen = torch.where(skipped.to(current.device), saved, current)
            torch._foreach_copy_(buffers, _split(chosen, buffers))


def _flat(buffers: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([buffer.detach().reshape(-1) for buffer in buffers])


def _split(flat: torch.Tensor, buffers: list[torch.Tensor]) -> list[torch.Tensor]:
    parts = flat.split([buffer.numel() for buffer in buffers])
    return [part.view(buffer.shape) for part, buffer in zip(parts, buffers)]
