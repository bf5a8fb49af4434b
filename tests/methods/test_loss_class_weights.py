"""Class-weighted cross-entropy: torch's weighted mean on index targets, its soft form on MixUp's and dense ones."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from segrecipes.errors import ConfigError
from segrecipes.methods.loss import SegmentationLoss, dice_loss, index_cross_entropy, soft_cross_entropy
from segrecipes.methods.targets import MixedTarget

IGNORE = 255
WEIGHTS = [0.5, 2.0, 1.25, 0.0]  # class 3 weighs nothing


def _example(dtype: torch.dtype = torch.float64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (2, 4, 5, 6) and an index target with about a fifth of the pixels ignored."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 4, 5, 6, generator=generator, dtype=dtype)
    target = torch.randint(0, 4, (2, 5, 6), generator=generator)
    target[torch.rand(2, 5, 6, generator=generator) < 0.2] = IGNORE
    return logits, target


def _value_and_grad(loss_fn, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = logits.detach().requires_grad_(True)
    value = loss_fn(logits)
    (grad,) = torch.autograd.grad(value, logits)
    return value.detach(), grad


def _weighted_soft_ce_by_hand(logits: torch.Tensor, dense: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``-sum_pixels sum_c w_c T_c log p_c / sum_pixels sum_c w_c T_c``, spelled out."""
    weighted = dense.to(logits.dtype) * weights.view(1, -1, 1, 1)
    return -(weighted * logits.log_softmax(1)).sum() / weighted.sum()


def test_fused_ce_equals_torch_weighted_cross_entropy_in_value_and_gradient():
    logits, target = _example()
    weights = torch.tensor(WEIGHTS, dtype=torch.float64)
    loss = SegmentationLoss(1.0, 0.0, IGNORE, class_weights=WEIGHTS)
    ours = _value_and_grad(lambda x: loss(x, target), logits)
    reference = _value_and_grad(lambda x: F.cross_entropy(x, target, weight=weights, ignore_index=IGNORE), logits)
    torch.testing.assert_close(ours, reference, atol=1e-12, rtol=1e-10)
    # ignored pixels get no gradient
    assert (ours[1].permute(0, 2, 3, 1)[target == IGNORE] == 0).all()


def test_index_and_soft_cross_entropy_take_the_same_weights():
    logits, target = _example()
    weights = torch.tensor(WEIGHTS, dtype=torch.float64)
    expected = _value_and_grad(lambda x: F.cross_entropy(x, target, weight=weights, ignore_index=IGNORE), logits)
    index = _value_and_grad(lambda x: index_cross_entropy(x, target, IGNORE, weights), logits)
    dense = MixedTarget(target, target, 0.0).dense(4, IGNORE).double()
    soft = _value_and_grad(lambda x: soft_cross_entropy(x, dense, weights), logits)
    dense_loss = _value_and_grad(lambda x: SegmentationLoss(1.0, 0.0, IGNORE, weights)(x, dense), logits)
    for result in (index, soft, dense_loss):
        torch.testing.assert_close(result, expected, atol=1e-12, rtol=1e-10)


def test_fused_backward_passes_gradcheck_with_weights_and_dice():
    logits, target = _example(seed=1)
    logits = logits[:1, :, :3, :4].clone().requires_grad_(True)
    target = target[:1, :3, :4]
    mixed = MixedTarget(target, target.flip(-1), 0.3)
    loss = SegmentationLoss(0.375, 1.125, IGNORE, class_weights=WEIGHTS)
    assert torch.autograd.gradcheck(lambda x: loss(x, target), (logits,))
    assert torch.autograd.gradcheck(lambda x: loss(x, mixed), (logits,))


def test_mixed_target_equals_the_dense_formula_by_hand():
    logits, target = _example(seed=2)
    partner = target.roll(1, 0)
    mixed = MixedTarget(target, partner, 0.35)
    weights = torch.tensor(WEIGHTS, dtype=torch.float64)
    dense = mixed.dense(4, IGNORE)
    ours = _value_and_grad(lambda x: SegmentationLoss(1.0, 0.0, IGNORE, WEIGHTS)(x, mixed), logits)
    by_hand = _value_and_grad(lambda x: _weighted_soft_ce_by_hand(x, dense, weights), logits)
    torch.testing.assert_close(ours, by_hand, atol=1e-7, rtol=1e-6)  # the dense map is float32
    dense_loss = _value_and_grad(lambda x: SegmentationLoss(1.0, 0.0, IGNORE, WEIGHTS)(x, dense), logits)
    torch.testing.assert_close(dense_loss, by_hand, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("mixing", [None, 0.25])
def test_weights_all_one_give_the_unweighted_loss(mixing: float | None):
    logits, target = _example(torch.float32, seed=3)
    target = target if mixing is None else MixedTarget(target, target.roll(1, 0), mixing)
    weighted = _value_and_grad(lambda x: SegmentationLoss(0.375, 1.125, IGNORE, [1.0] * 4)(x, target), logits)
    plain = _value_and_grad(lambda x: SegmentationLoss(0.375, 1.125, IGNORE)(x, target), logits)
    torch.testing.assert_close(weighted, plain)


def test_dice_ce_with_weights_is_weighted_ce_plus_unchanged_dice():
    logits, target = _example(seed=4)
    weights = torch.tensor(WEIGHTS, dtype=torch.float64)
    loss = SegmentationLoss.named("dice_ce", IGNORE, class_weights=WEIGHTS)
    ours = _value_and_grad(lambda x: loss(x, target), logits)
    expected = _value_and_grad(
        lambda x: 0.375 * F.cross_entropy(x, target, weight=weights, ignore_index=IGNORE)
        + 1.125 * dice_loss(x, target, IGNORE), logits)
    torch.testing.assert_close(ours, expected, atol=1e-12, rtol=1e-10)


def test_weights_are_moved_to_the_logits_once():
    logits, target = _example(torch.float32, seed=5)
    loss = SegmentationLoss(class_weights=torch.tensor(WEIGHTS))
    loss(logits, target)
    cached = loss._device_weights
    loss(logits, target)
    assert loss._device_weights is cached and cached.dtype == torch.float32


def test_wrong_length_or_bad_weights_are_config_errors():
    logits, target = _example(torch.float32)
    with pytest.raises(ConfigError, match=r"loss\.class_weights has 3 values but the model predicts 4 classes"):
        SegmentationLoss(class_weights=[1.0, 2.0, 3.0])(logits, target)
    for bad in ([], [1.0, -1.0], [0.0, 0.0], [[1.0]]):
        with pytest.raises(ConfigError, match=r"loss\.class_weights"):
            SegmentationLoss(class_weights=bad)
