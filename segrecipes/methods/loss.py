"""Cross-entropy + Dice for segmentation, on class-index or dense (MixUp) targets (SPEC §2).

All terms are computed in fp32 from fp16/bf16 logits without an fp32 copy of the logits (the cast is
fused into the softmax), so callers should pass the logits as they come.

Dice follows the reference exactly: softmax probabilities in fp32, intersection ``I``, target mass ``G``
and predicted mass ``P`` pooled over batch and space per class over valid pixels only (ignored pixels,
or zero-mass pixels of a dense target, count in neither), ``1 - (2I + 1e-5) / (G + P + 1e-5)`` per
class, averaged over the classes present in the target (``G > 0``).

Speed: for index targets no one-hot map is built (``I`` and ``G`` are per-pixel scatter-adds into C
bins), ``P`` is one batched matrix-vector product, and the gradient of the statistics is written in
one pass, so Dice costs about one softmax forward and backward on top of CE.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from segrecipes.errors import ConfigError

DICE_SMOOTH = 1e-5
# name -> (CE weight, Dice weight); "dice_ce" is the reference loss of every optimized recipe (SPEC §2)
NAMED_LOSSES = {"ce": (1.0, 0.0), "dice_ce": (0.375, 1.125)}


def _compute_dtype(logits: torch.Tensor) -> torch.dtype:
    """fp32 for half-precision logits (the cast is fused into the softmax, no copy), else their own dtype."""
    return torch.promote_types(logits.dtype, torch.float32)


class _DiceStatistics(torch.autograd.Function):
    """Per-class ``I = sum(p * t)`` and ``P = sum(p * w)`` over batch and space, with a one-pass backward.

    ``target`` is a (B, H, W) index map (ignored pixels already at any class, with weight 0) or a dense
    (B, C, H, W) map; ``pixel_weights`` (B, H, W) is 1 on valid pixels and 0 elsewhere. Autograd would
    assemble dL/dp from several full-size pieces (a zero-filled scatter for the gather, an expanded
    masked sum, their sum); here ``dL/dp = w * dL/dP + t * dL/dI`` is written once.
    """

    @staticmethod
    def forward(
        ctx: Any, probs: torch.Tensor, target: torch.Tensor, pixel_weights: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if target.dim() == 4:
            intersection = (probs * target).sum((0, 2, 3))
        else:
            at_target = probs.gather(1, target.unsqueeze(1)).squeeze(1) * pixel_weights
            intersection = probs.new_zeros(probs.shape[1]).index_add_(0, target.flatten(), at_target.flatten())
        # a batched matrix-vector product sums the valid pixels without a (B, C, H, W) product tensor
        predicted = torch.matmul(probs.flatten(2), pixel_weights.flatten(1).unsqueeze(-1)).sum(0).squeeze(-1)
        ctx.save_for_backward(target, pixel_weights)
        return intersection, predicted

    @staticmethod
    @once_differentiable
    def backward(
        ctx: Any, grad_intersection: torch.Tensor, grad_predicted: torch.Tensor
    ) -> tuple[torch.Tensor, None, None]:
        target, pixel_weights = ctx.saved_tensors
        per_class_i, per_class_p = grad_intersection.view(1, -1, 1, 1), grad_predicted.view(1, -1, 1, 1)
        if target.dim() == 4:  # t is zero wherever w is, so (dL/dP + t * dL/dI) * w is the full gradient
            grad = torch.addcmul(per_class_p, target, per_class_i).mul_(pixel_weights.unsqueeze(1))
        else:
            grad = pixel_weights.unsqueeze(1) * per_class_p
            grad.scatter_add_(1, target.unsqueeze(1), (grad_intersection[target] * pixel_weights).unsqueeze(1))
        return grad, None, None


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``-(target * log_softmax(logits)).sum() / target.sum()`` for a dense (B, C, H, W) target; 0 if it has no mass.

    Renormalizing by the total mass makes a one-hot target with ignored (zero-mass) pixels give exactly
    the cross-entropy averaged over the labelled pixels.
    """
    log_probs = F.log_softmax(logits, dim=1, dtype=_compute_dtype(logits))
    total = -(target * log_probs).sum()
    mass = target.sum()
    return total / mass.clamp_min(torch.finfo(mass.dtype).tiny)


def index_cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Cross-entropy averaged over the labelled pixels of a (B, H, W) index target; 0 (not NaN) if there are none."""
    log_probs = F.log_softmax(logits, dim=1, dtype=_compute_dtype(logits))
    total = F.nll_loss(log_probs, target.long(), ignore_index=ignore_index, reduction="sum")
    return total / (target != ignore_index).sum().clamp_min(1)


def dice_loss(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255, smooth: float = DICE_SMOOTH
) -> torch.Tensor:
    """Reference Dice loss of (B, C, H, W) logits against a (B, H, W) index or (B, C, H, W) dense target.

    Computed in fp32 even under autocast or for fp16 logits (fp64 for fp64 logits).
    """
    with torch.autocast(device_type=logits.device.type, enabled=False):
        probs = F.softmax(logits, dim=1, dtype=_compute_dtype(logits))
        if target.dim() == 4:
            target = target.to(probs.dtype)
            pixel_weights = (target.sum(1) > 0).to(probs.dtype)
            ground_truth = target.sum((0, 2, 3))
        else:
            valid = target != ignore_index
            target = torch.where(valid, target, 0).long()
            pixel_weights = valid.to(probs.dtype)
            ground_truth = probs.new_zeros(logits.shape[1]).index_add_(0, target.flatten(), pixel_weights.flatten())
        intersection, predicted = _DiceStatistics.apply(probs, target, pixel_weights)
        per_class = 1.0 - (2.0 * intersection + smooth) / (ground_truth + predicted + smooth)
        present = (ground_truth > 0).float()
        return (per_class * present).sum() / present.sum().clamp_min(1.0)


class SegmentationLoss(nn.Module):
    """``ce_weight * CE + dice_weight * Dice``; Dice is computed only when its weight is non-zero."""

    def __init__(self, ce_weight: float = 1.0, dice_weight: float = 0.0, ignore_index: int = 255) -> None:
        super().__init__()
        if ce_weight < 0 or dice_weight < 0 or ce_weight == dice_weight == 0:
            raise ConfigError(
                f"loss: weights must be >= 0 and not both 0, got ce_weight={ce_weight!r} dice_weight={dice_weight!r}"
            )
        self.ce_weight = ce_weight
        self.dice_weight = dice_weight
        self.ignore_index = ignore_index

    @classmethod
    def named(
        cls, name: str, ignore_index: int = 255, ce_weight: float | None = None, dice_weight: float | None = None
    ) -> SegmentationLoss:
        """The loss called ``name`` in :data:`NAMED_LOSSES` (``ce`` or ``dice_ce``); a weight given here replaces it."""
        if name not in NAMED_LOSSES:
            raise ConfigError(f"loss.name: unknown loss {name!r} (use one of {', '.join(NAMED_LOSSES)})")
        named_ce, named_dice = NAMED_LOSSES[name]
        return cls(named_ce if ce_weight is None else ce_weight, named_dice if dice_weight is None else dice_weight,
                   ignore_index)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        dense = target.dim() == 4
        expected = tuple(logits.shape) if dense else (logits.shape[0], *logits.shape[2:])
        if logits.dim() != 4 or tuple(target.shape) != expected:
            raise ConfigError(
                f"loss: target of shape {tuple(target.shape)} does not fit logits of shape {tuple(logits.shape)}"
            )
        loss = logits.new_zeros((), dtype=torch.float32)
        if self.ce_weight > 0:
            if dense:
                cross_entropy = soft_cross_entropy(logits, target)
            else:
                cross_entropy = index_cross_entropy(logits, target, self.ignore_index)
            loss = loss + self.ce_weight * cross_entropy
        if self.dice_weight > 0:
            loss = loss + self.dice_weight * dice_loss(logits, target, self.ignore_index)
        return loss
