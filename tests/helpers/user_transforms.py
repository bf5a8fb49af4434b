"""A ``data.transform`` as a README user would write it: torchvision transforms v2 on (image, mask)."""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

_ERASE = v2.RandomErasing(p=1.0, value=0)


def random_erase(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Erase a random box of the image (v2 leaves a Mask alone for RandomErasing)."""
    erased, kept = _ERASE(tv_tensors.Image(image), tv_tensors.Mask(mask))
    return erased, kept
