"""Cross-entropy + Dice for segmentation, on class-index, MixUp or dense targets (SPEC §2).

Dice follows the reference exactly: softmax probabilities in fp32, intersection ``I``, target mass ``G``
and predicted mass ``P`` pooled over batch and space per class over valid pixels only (ignored pixels,
or pixels without mass, count in neither), ``1 - (2I + 1e-5) / (G + P + 1e-5)`` per class, averaged
over the classes present in the target (``G > 0``). Cross-entropy on a mixed or dense target is
renormalized by the total target mass, so a one-hot target gives the mean over labelled pixels.
Optional class weights ``w`` (``loss.class_weights``) weigh the cross-entropy only, as torch's weighted
mean: ``-sum w_c T_c log p_c / sum w_c T_c`` over pixels and classes, which is
``F.cross_entropy(weight=w, ignore_index=...)`` for a one-hot target; Dice is unchanged.

Speed, at many classes: for index targets (plain, or the two maps of a :class:`MixedTarget`) both terms
come from one fused pass (:class:`_FusedDiceCE`): one fp32 softmax of the logits (cast fused in, no fp32
copy of fp16/bf16 logits), the class statistics as scatter-adds of the probabilities at the target
classes and one batched matrix-vector product, and a hand-written backward that reads the
probabilities twice and writes the gradient once. No (B, C, H, W) one-hot or target map is ever built. A dense
target (a user's own) is handled by the plain formulas with autograd.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from segrecipes.errors import ConfigError
from segrecipes.methods.targets import MixedTarget

DICE_SMOOTH = 1e-5
# name -> (CE weight, Dice weight); "dice_ce" is the reference loss of every optimized recipe (SPEC §2)
NAMED_LOSSES = {"ce": (1.0, 0.0), "dice_ce": (0.375, 1.125)}
Target = torch.Tensor | MixedTarget


def _compute_dtype(logits: torch.Tensor) -> torch.dtype:
    """fp32 for half-precision logits (the cast is fused into the softmax, no copy), else their own dtype."""
    return torch.promote_types(logits.dtype, torch.float32)


def _on(logits: torch.Tensor, class_weights: torch.Tensor | None) -> torch.Tensor | None:
    """The class weights on the logits' device in their compute dtype (a no-op when already there)."""
    return None if class_weights is None else class_weights.to(logits.device, _compute_dtype(logits))


def _ce_masses(
    maps: list[tuple[torch.Tensor, torch.Tensor, float]], class_weights: torch.Tensor | None
) -> list[torch.Tensor]:
    """Per map, the cross-entropy mass of each pixel: the map's weight, times the class weight at its label."""
    return [weight * mass if class_weights is None else (weight * mass) * class_weights[labels]
            for labels, mass, weight in maps]


def _maps(target: torch.Tensor | MixedTarget, ignore_index: int) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
    """``(classes, mass, weight)`` per index map: classes with ignored pixels at 0, their 0/1 mass."""
    maps = [(target, 1.0)] if isinstance(target, torch.Tensor) else [(target.first, 1.0 - target.mixing),
                                                                      (target.second, target.mixing)]
    result = []
    for labels, weight in maps:
        valid = labels != ignore_index
        result.append((torch.where(valid, labels, 0).long(), valid, weight))
    return result


class _FusedDiceCE(torch.autograd.Function):
    """``ce_weight * CE + dice_weight * Dice`` of logits against one or two weighted index maps.

    Per pixel the target is ``T = sum_j weight_j * mass_j * onehot(classes_j)`` and its mass
    ``mu = sum_j weight_j * mass_j``; ``w = [mu > 0]``. Cross-entropy sees the class-weighted target
    ``T' = sum_j cw[classes_j] weight_j mass_j onehot(classes_j)`` of mass ``mu'`` (``cw``: the class weights,
    1 without), a per-pixel factor per map, never a (B, C, H, W) tensor. With ``M = sum mu'``, ``p = softmax(z)``:
    ``CE = -sum T' log p / M``; ``I_c = sum p_c T_c``, ``G_c = sum T_c``, ``P_c = sum w p_c``.
    Backward: ``dCE/dz = (mu' p - T') / M``; for Dice with ``a_c = dL/dI_c``, ``b_c = dL/dP_c``,
    ``dL/dp = a T + b w`` and ``dL/dz = p (dL/dp - <p, dL/dp>)``. Both are written as
    ``p * (A_pixel + b_c w) + (terms at the target classes)``: two passes over ``p``.
    """

    @staticmethod
    def forward(
        ctx: Any, logits: torch.Tensor, maps: list[tuple[torch.Tensor, torch.Tensor, float]], ce_weight: float,
        dice_weight: float, smooth: float, class_weights: torch.Tensor | None,
    ) -> torch.Tensor:
        probs = torch.softmax(logits, dim=1, dtype=_compute_dtype(logits))
        classes = logits.shape[1]
        at_target = [probs.gather(1, labels.unsqueeze(1)).squeeze(1) for labels, _, _ in maps]
        mu = sum(weight * mass for _, mass, weight in maps)
        ce_masses = _ce_masses(maps, class_weights)
        total_mass = sum(ce_masses).sum()
        loss = probs.new_zeros(())
        if ce_weight:
            tiny = torch.finfo(probs.dtype).tiny
            log_likelihood = sum(ce_mass * p.clamp_min(tiny).log() for ce_mass, p in zip(ce_masses, at_target))
            loss = loss - ce_weight * log_likelihood.sum() / total_mass.clamp_min(tiny)
        alpha = beta = None
        if dice_weight:
            pixel_weights = (mu > 0).to(probs.dtype)
            intersection, ground_truth = probs.new_zeros(classes), probs.new_zeros(classes)
            for (labels, mass, weight), p in zip(maps, at_target):
                intersection.index_add_(0, labels.flatten(), (weight * mass * p).flatten())
                ground_truth.index_add_(0, labels.flatten(), (weight * mass).flatten().to(probs.dtype))
            predicted = torch.matmul(probs.flatten(2), pixel_weights.flatten(1).unsqueeze(-1)).sum(0).squeeze(-1)
            denominator = ground_truth + predicted + smooth
            present = (ground_truth > 0).to(probs.dtype)
            count = present.sum().clamp_min(1.0)
            per_class = 1.0 - (2.0 * intersection + smooth) / denominator
            loss = loss + dice_weight * (per_class * present).sum() / count
            alpha = -2.0 / denominator * present / count  # dL/dI
            beta = (2.0 * intersection + smooth) / denominator.square() * present / count  # dL/dP
        ctx.maps, ctx.weights, ctx.class_weights = maps, (ce_weight, dice_weight), class_weights
        ctx.input_dtype = logits.dtype
        ctx.save_for_backward(probs, mu, total_mass, *at_target, *([alpha, beta] if dice_weight else []))
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        probs, mu, total_mass, *rest = ctx.saved_tensors
        maps, (ce_weight, dice_weight) = ctx.maps, ctx.weights
        at_target, dice_terms = rest[: len(maps)], rest[len(maps):]
        # the upstream gradient is folded into the per-pixel and per-class factors: no extra full pass
        ce_scale = grad_loss * ce_weight / total_mass.clamp_min(torch.finfo(probs.dtype).tiny)
        ce_masses = _ce_masses(maps, ctx.class_weights)  # recomputed: cheaper than keeping them
        pixel = ce_scale * sum(ce_masses)  # A_pixel: what multiplies p at every class
        target_terms = [-ce_scale * ce_mass for ce_mass in ce_masses]  # added at the target classes
        if not dice_weight:
            grad = probs * pixel.unsqueeze(1)
        else:
            alpha, beta = (term * (grad_loss * dice_weight) for term in dice_terms)
            pixel_weights = (mu > 0).to(probs.dtype)
            # <p, dL/dp> = w <p, b> + sum_j weight_j mass_j a_{t_j} p_{t_j}
            dot = torch.matmul(beta, probs.flatten(2)).view_as(mu) * pixel_weights
            for index, ((labels, mass, weight), p) in enumerate(zip(maps, at_target)):
                at_class = weight * mass * alpha[labels] * p
                dot = dot + at_class
                target_terms[index] = target_terms[index] + at_class
            pixel = pixel - dot
            # the factor is built once at full size, then multiplied by p in place (p itself is kept)
            grad = torch.addcmul(pixel.unsqueeze(1), pixel_weights.unsqueeze(1), beta.view(1, -1, 1, 1)).mul_(probs)
        for (labels, _, _), term in zip(maps, target_terms):
            grad.scatter_add_(1, labels.unsqueeze(1), term.unsqueeze(1))
        return grad.to(ctx.input_dtype), None, None, None, None, None


def fused_dice_ce(
    logits: torch.Tensor, target: Target, ce_weight: float, dice_weight: float, ignore_index: int = 255,
    smooth: float = DICE_SMOOTH, class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """``ce_weight * CE + dice_weight * Dice`` of (B, C, H, W) logits against a (B, H, W) index target or a
    :class:`MixedTarget`, in one fused pass (see the module docstring); fp32 whatever the logits' dtype.
    ``class_weights`` (C,) weigh the cross-entropy term only."""
    with torch.autocast(device_type=logits.device.type, enabled=False):
        return _FusedDiceCE.apply(logits, _maps(target, ignore_index), float(ce_weight), float(dice_weight), smooth,
                                  _on(logits, class_weights))


def soft_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """``-(target * log_softmax(logits)).sum() / target.sum()`` for a dense (B, C, H, W) target; 0 if it has no mass.

    Renormalizing by the total mass makes a one-hot target with ignored (zero-mass) pixels give exactly
    the cross-entropy averaged over the labelled pixels. ``class_weights`` (C,) scale the target's classes
    first: torch's weighted mean for a one-hot target.
    """
    log_probs = F.log_softmax(logits, dim=1, dtype=_compute_dtype(logits))
    weights = _on(logits, class_weights)
    if weights is not None:
        target = target * weights.view(-1, 1, 1)
    total = -(target * log_probs).sum()
    mass = target.sum()
    return total / mass.clamp_min(torch.finfo(mass.dtype).tiny)


def index_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255, class_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy averaged over the labelled pixels of a (B, H, W) index target; 0 (not NaN) if there are none.

    With ``class_weights`` (C,): the weighted mean ``F.cross_entropy(weight=..., ignore_index=...)`` computes."""
    log_probs = F.log_softmax(logits, dim=1, dtype=_compute_dtype(logits))
    weights = _on(logits, class_weights)
    target = target.long()
    total = F.nll_loss(log_probs, target, weight=weights, ignore_index=ignore_index, reduction="sum")
    valid = target != ignore_index
    if weights is None:
        return total / valid.sum().clamp_min(1)
    mass = (weights[torch.where(valid, target, 0)] * valid).sum()
    return total / mass.clamp_min(torch.finfo(mass.dtype).tiny)


def dice_loss(
    logits: torch.Tensor, target: Target, ignore_index: int = 255, smooth: float = DICE_SMOOTH
) -> torch.Tensor:
    """Reference Dice loss of (B, C, H, W) logits against a (B, H, W) index target, a
    :class:`MixedTarget` or a dense (B, C, H, W) target. Computed in fp32 even under autocast or for
    fp16 logits (fp64 for fp64 logits)."""
    if isinstance(target, MixedTarget) or target.dim() == 3:
        return fused_dice_ce(logits, target, 0.0, 1.0, ignore_index, smooth)
    with torch.autocast(device_type=logits.device.type, enabled=False):
        probs = F.softmax(logits, dim=1, dtype=_compute_dtype(logits))
        target = target.to(probs.dtype)
        pixel_weights = (target.sum(1, keepdim=True) > 0).to(probs.dtype)
        intersection = (probs * target).sum((0, 2, 3))
        predicted = (probs * pixel_weights).sum((0, 2, 3))
        ground_truth = target.sum((0, 2, 3))
        per_class = 1.0 - (2.0 * intersection + smooth) / (ground_truth + predicted + smooth)
        present = (ground_truth > 0).to(probs.dtype)
        return (per_class * present).sum() / present.sum().clamp_min(1.0)


class SegmentationLoss(nn.Module):
    """``ce_weight * CE + dice_weight * Dice`` of logits against a (B, H, W) index target, a
    :class:`MixedTarget` (MixUp's) or a dense (B, C, H, W) target; ``class_weights`` (one per class)
    weigh the cross-entropy term (see the module docstring)."""

    def __init__(
        self, ce_weight: float = 1.0, dice_weight: float = 0.0, ignore_index: int = 255,
        class_weights: torch.Tensor | Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if ce_weight < 0 or dice_weight < 0 or ce_weight == dice_weight == 0:
            raise ConfigError(
                f"loss: weights must be >= 0 and not both 0, got ce_weight={ce_weight!r} dice_weight={dice_weight!r}"
            )
        self.ce_weight = ce_weight
        self.dice_weight = dice_weight
        self.ignore_index = ignore_index
        self.class_weights = None if class_weights is None else _checked_weights(class_weights)
        self._device_weights: torch.Tensor | None = None  # on the logits' device: no host-device copy per step

    @classmethod
    def named(
        cls, name: str, ignore_index: int = 255, ce_weight: float | None = None, dice_weight: float | None = None,
        class_weights: torch.Tensor | Sequence[float] | None = None,
    ) -> SegmentationLoss:
        """The loss called ``name`` in :data:`NAMED_LOSSES` (``ce`` or ``dice_ce``); a weight given here replaces it."""
        if name not in NAMED_LOSSES:
            raise ConfigError(f"loss.name: unknown loss {name!r} (use one of {', '.join(NAMED_LOSSES)})")
        named_ce, named_dice = NAMED_LOSSES[name]
        return cls(named_ce if ce_weight is None else ce_weight, named_dice if dice_weight is None else dice_weight,
                   ignore_index, class_weights)

    def _weights_for(self, logits: torch.Tensor) -> torch.Tensor | None:
        """The class weights on the logits' device and compute dtype, moved there once."""
        if self.class_weights is None:
            return None
        if len(self.class_weights) != logits.shape[1]:
            raise ConfigError(f"loss.class_weights has {len(self.class_weights)} values but the model predicts "
                              f"{logits.shape[1]} classes")
        cached, dtype = self._device_weights, _compute_dtype(logits)
        if cached is None or cached.device != logits.device or cached.dtype != dtype:
            self._device_weights = cached = self.class_weights.to(logits.device, dtype)
        return cached

    def forward(self, logits: torch.Tensor, target: Target) -> torch.Tensor:
        dense = isinstance(target, torch.Tensor) and target.dim() == 4
        expected = tuple(logits.shape) if dense else (logits.shape[0], *logits.shape[2:])
        if logits.dim() != 4 or tuple(target.shape) != expected:
            raise ConfigError(
                f"loss: target of shape {tuple(target.shape)} does not fit logits of shape {tuple(logits.shape)}"
            )
        class_weights = self._weights_for(logits)
        if not dense:  # CE alone too: the fused pass is faster than log_softmax + nll_loss (BENCHMARKS.md)
            return fused_dice_ce(logits, target, self.ce_weight, self.dice_weight, self.ignore_index,
                                 class_weights=class_weights)
        loss = logits.new_zeros((), dtype=torch.float32)
        if self.ce_weight > 0:
            loss = loss + self.ce_weight * soft_cross_entropy(logits, target, class_weights)
        if self.dice_weight > 0:
            loss = loss + self.dice_weight * dice_loss(logits, target, self.ignore_index)
        return loss


def _checked_weights(class_weights: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """One float64 weight per class on the host (cast to the logits' device and dtype at the first step)."""
    weights = torch.as_tensor(class_weights, dtype=torch.float64).detach().cpu()
    if weights.dim() != 1 or not len(weights) or weights.amin() < 0 or weights.amax() == 0:
        raise ConfigError(f"loss.class_weights: expected one weight >= 0 per class, not all 0, got {weights.tolist()}")
    return weights
