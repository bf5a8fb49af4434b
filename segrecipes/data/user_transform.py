"""``data.transform: package.module:callable``: a user's own augmentation after the reference pipeline.

The callable takes and returns ``(image, mask)`` tensors (uint8 (3, H, W) image, or the normalized
float32 of other bands; (H, W) mask), e.g. a ``torchvision.transforms.v2.Compose``. Its randomness
comes from torch's global generator, which is seeded from the sample's own generator inside
``torch.random.fork_rng``: the sample looks the same in every worker and after a resume, and the
training process's random state (dropout, MixUp) is left as it was.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch

from .errors import DataError

Pair = tuple[torch.Tensor, torch.Tensor]


def resolve(spec: str) -> Callable[..., Any]:
    """The object ``package.module:name`` (``name`` may be dotted) names; a DataError saying why not."""
    module_name, _, attribute = spec.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise DataError(f"data.transform: cannot import {module_name!r} ({error})") from None
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise DataError(f"data.transform: {module_name!r} has no {attribute!r}")
        found = getattr(found, part)
    if not callable(found):
        raise DataError(f"data.transform: {spec!r} is not callable")
    return found


class UserTransform:
    """A stage of :class:`~segrecipes.data.transforms.TrainTransform` that calls ``spec``'s callable.

    Resolved when built, so a bad name stops the run before its first step; pickled as its name (the
    callable of a worker process is imported there)."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.function = resolve(spec)

    def __getstate__(self) -> dict[str, str]:
        return {"spec": self.spec}

    def __setstate__(self, state: dict[str, str]) -> None:
        self.__init__(state["spec"])  # type: ignore[misc]

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> Pair:
        seed = int(torch.randint(2**62, (), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            result = self.function(image, mask)
        if not (isinstance(result, tuple | list) and len(result) == 2
                and all(isinstance(part, torch.Tensor) for part in result)):
            raise DataError(f"data.transform: {self.spec} must return (image, mask) tensors, got "
                            f"{type(result).__name__}")
        new_image, new_mask = (torch.as_tensor(part) for part in result)  # tv_tensors back to plain tensors
        if tuple(new_mask.shape) != tuple(mask.shape) or tuple(new_image.shape) != tuple(image.shape):
            raise DataError(f"data.transform: {self.spec} changed the sizes (image {tuple(image.shape)} -> "
                            f"{tuple(new_image.shape)}, mask {tuple(mask.shape)} -> {tuple(new_mask.shape)}); "
                            "batches need every crop at data.crop_size")
        return new_image, new_mask
