"""MixUp for segmentation: blend each image with another of the batch, and its labels with the other's.

One ``lambda ~ Beta(alpha, alpha)`` and one permutation per batch; ``mixing = min(lambda, 1 - lambda)``
keeps the original image dominant. The mixed target is the dense ``(1 - m) onehot(t) + m onehot(t[perm])``
of SPEC §2, carried as the two index maps and ``m`` (:class:`~segrecipes.methods.targets.MixedTarget`):
the loss reads it as it is, and no (B, C, H, W) map is built. Ignored pixels contribute zero label
mass, so a pixel's total mass is 0, 1 - mixing, mixing or 1, and the loss renormalizes by the total mass.

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
from segrecipes.methods.targets import MixedTarget


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
) -> tuple[torch.Tensor, MixedTarget | torch.Tensor, float]:
    """Mix a batch with a permutation of itself.

    ``images`` (B, C_in, H, W) float; ``target`` (B, H, W) class indices with ``ignore_index`` (every
    other value must be < ``num_classes``) or an already dense (B, num_classes, H, W) float target.
    Returns ``(mixed_images, mixed_target, mixing)`` with ``mixed = (1 - m) * x + m * x[perm]`` and, for an
    index target, ``MixedTarget(t, t[perm], m)``, which stands for ``(1 - m) onehot(t) + m onehot(t[perm])``
    (``.dense(num_classes)`` builds it); a dense target is blended as it is.
    """
    if alpha <= 0:
        raise ConfigError(f"mixup.alpha must be positive, got {alpha!r}")
    mixing = _draw_mixing(alpha, generator)
    perm_device = generator.device if generator is not None else torch.device("cpu")
    perm = _on(images.device, torch.randperm(images.shape[0], generator=generator, device=perm_device))
    mixed_images = images.mul(1.0 - mixing).add_(images[perm], alpha=mixing)

    if target.dim() == 4:
        if target.shape[1] != num_classes:
            raise ConfigError(f"mixup: dense target has {target.shape[1]} classes, expected num_classes={num_classes}")
        return mixed_images, target.mul(1.0 - mixing).add_(target[perm], alpha=mixing), mixing
    return mixed_images, MixedTarget(target, target[perm], mixing), mixing


def _on(device: torch.device, perm: torch.Tensor) -> torch.Tensor:
    """``perm`` on ``device`` without making the host wait: a blocking copy to a GPU waits for its queue
    (a host-device synchronization every step), so a CPU permutation goes through pinned memory."""
    if perm.device == device:
        return perm
    if perm.device.type == "cpu" and device.type == "cuda":
        perm = perm.pin_memory()
    return perm.to(device, non_blocking=True)


class MixUp(Method):
    """Mixes every training batch; the loss then receives a :class:`MixedTarget` (or a blended dense target)."""

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
    ) -> tuple[torch.Tensor, MixedTarget | torch.Tensor]:
        mixed_images, mixed_target, _ = mixup_segmentation(images, target, self.num_classes, self.alpha,
                                                           self.ignore_index)
        return mixed_images, mixed_target
