"""What a skipped step must undo, and how skipped steps are counted, without reading the device.

A step whose forward pass overflowed leaves non-finite BatchNorm statistics behind even though the
optimizer skipped it: :class:`BufferGuard` saves the model's buffers before each step and puts them
back after a skipped one, choosing between saved and current values with ``torch.where`` over one flat
copy per dtype. :class:`SkipCounter` keeps the streak of skipped steps on the device too; the trainer
reads it on logging steps only.
"""

from __future__ import annotations

import torch
from torch import nn

from segrecipes.engine.interrupt import TrainingDiverged


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


class SkipCounter:
    """Skipped steps in all, and the longest run of consecutive ones, as device tensors."""

    def __init__(self, device: torch.device) -> None:
        self.streak = torch.zeros((), device=device)
        self.longest = torch.zeros((), device=device)
        self.total = torch.zeros((), device=device)

    def record(self, skipped: torch.Tensor) -> None:
        skipped = skipped.float()
        self.streak = (self.streak + 1) * skipped
        self.longest = torch.maximum(self.longest, self.streak)
        self.total = self.total + skipped

    def check(self, max_in_a_row: int, loss: torch.Tensor) -> int:
        """The number of skipped steps so far (one host read); raises when ``max_in_a_row`` were skipped in a row."""
        longest, total = torch.stack([self.longest, self.total]).tolist()
        if longest >= max_in_a_row:
            raise TrainingDiverged(f"{int(longest)} consecutive steps with non-finite loss or gradients (last loss "
                                   f"{float(loss)}); stopped without saving. Lower optimizer.lr or use precision "
                                   "fp32/bf16.")
        return int(total)
