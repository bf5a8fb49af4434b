"""MixUp for segmentation: blend each image with another of the batch, and its labels into a dense target.

One ``lambda ~ Beta(alpha, alpha)`` and one permutation per batch; ``mixing = min(lambda, 1 - lambda)``
keeps the original image dominant. Ignored pixels contribute zero label mass, so a pixel's total mass
is 0, 1 - mixing, mixing or 1, and the loss renormalizes by the total mass (SPEC §2).

SAM: the hook mixes once per batch, before the trainer's step, so both SAM passes see the SAME mixed
batch. That is the right choice: SAM's ascent direction ``e`` comes from the gradient of one loss, and
the descent gradient must be of that same loss at ``w + e``; the reference redrew the mix for the
second pass, which turns ``e`` into a step along a different objective's gradient (extra noise, not SAM).
"""

from __future__ import annotations

import random

import torch

from segrecipes.errors import ConfigError
from segrecipes.methods.base import ORDER_BATCH_CONTENT, Method, StepContext


def _draw_mixing(alpha: float, generator: torch.Generator | None) -> float:
    """``min(lambda, 1 - lambda)`` with ``lambda ~ Beta(alpha, alpha)``, reproducible from torch's RNG.

    torch's Beta sampler takes no generator, so one seed is drawn from ``generator`` (or torch's
    global RNG) and Python's Beta sampler uses it.
    """
    device = generator.device if generator is not None else torch.device("cpu")
    seed = int(torch.randint(2**62, (), generator=generator, device=device))
    lam = random.Random(seed).betavariate(alpha, alpha)
    return min(lam, 1.0 - lam)


def mixup_segmentation(
    images: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    alpha: float,
    ignore_index: int = 255,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mix a batch with a permutation of itself.

    ``images`` (B, C_in, H, W) float; ``target`` (B, H, W) class indices with ``ignore_index`` (every
    other value must be < ``num_classes``) or an already dense (B, num_classes, H, W) float target.
    Returns ``(mixed_images, dense_target, mixing)`` with ``mixed = (1 - m) * x + m * x[perm]`` and
    ``dense_target = (1 - m) * onehot(t) + m * onehot(t[perm])`` (float32, zero on ignored pixels).
    """
    if alpha <= 0:
        raise ConfigError(f"mixup.alpha must be positive, got {alpha!r}")
    mixing = _draw_mixing(alpha, generator)
    perm_device = generator.device if generator is not None else torch.device("cpu")
    perm = torch.randperm(images.shape[0], generator=generator, device=perm_device).to(images.device)
    mixed_images = images.mul(1.0 - mixing).add_(images[perm], alpha=mixing)

    if target.dim() == 4:
        if target.shape[1] != num_classes:
            raise ConfigError(f"mixup: dense target has {target.shape[1]} classes, expected num_classes={num_classes}")
        return mixed_images, target.mul(1.0 - mixing).add_(target[perm], alpha=mixing), mixing

    batch, height, width = target.shape
    valid = target != ignore_index
    index = torch.where(valid, target, 0).long().unsqueeze(1)
    mass = valid.unsqueeze(1).float()
    dense = torch.zeros(batch, num_classes, height, width, device=target.device)
    dense.scatter_add_(1, index, mass * (1.0 - mixing))
    dense.scatter_add_(1, index[perm], mass[perm] * mixing)
    return mixed_images, dense, mixing


class MixUp(Method):
    """Mixes every training batch; the loss then receives a dense (B, C, H, W) target."""

    name = "mixup"
    order = ORDER_BATCH_CONTENT

    def __init__(self, num_classes: int, alpha: float = 0.2, ignore_index: int = 255) -> None:
        if num_classes < 1:
            raise ConfigError(f"mixup: num_classes must be >= 1, got {num_classes!r}")
        if alpha <= 0:
            raise ConfigError(f"mixup.alpha must be positive, got {alpha!r}")
        self.num_classes = num_classes
        self.alpha = alpha
        self.ignore_index = ignore_index

    def transform_batch(
        self, context: StepContext, images: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mixed_images, dense_target, _ = mixup_segmentation(
            images, target, self.num_classes, self.alpha, self.ignore_index
        )
        return mixed_images, dense_target
