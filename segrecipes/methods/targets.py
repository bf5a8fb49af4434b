"""A MixUp target without a dense map: two class-index maps and the weight of the second.

``MixedTarget(first, second, mixing)`` stands for the dense target
``(1 - mixing) * onehot(first) + mixing * onehot(second)`` (ignored pixels of either map carry no
mass) in two small integer maps instead of a (B, C, H, W) float tensor: at ADE20k's 150 classes and a
batch of 16 x 512x512 the dense form is 2.5 GB per device. The loss reads it as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MixedTarget:
    first: torch.Tensor  # (B, H, W) class indices, ignore index where unlabelled
    second: torch.Tensor  # (B, H, W) the partners' class indices
    mixing: float  # the weight of ``second``, in [0, 0.5]

    @property
    def shape(self) -> torch.Size:
        return self.first.shape

    def __len__(self) -> int:
        return len(self.first)

    def tensor_split(self, sections: int) -> tuple[MixedTarget, ...]:
        """Microbatches, as ``Tensor.tensor_split`` splits the images."""
        return tuple(MixedTarget(first, second, self.mixing)
                     for first, second in zip(self.first.tensor_split(sections), self.second.tensor_split(sections)))

    def dense(self, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
        """The (B, num_classes, H, W) float32 target this stands for (for checks and for users' own losses)."""
        dense = torch.zeros(len(self.first), num_classes, *self.first.shape[1:], device=self.first.device)
        for labels, weight in ((self.first, 1.0 - self.mixing), (self.second, self.mixing)):
            valid = labels != ignore_index
            dense.scatter_add_(1, torch.where(valid, labels, 0).long().unsqueeze(1), valid.unsqueeze(1) * weight)
        return dense
