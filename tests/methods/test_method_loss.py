"""CE and Dice against numbers worked out by hand and against a naive per-class reference."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from segrecipes.errors import ConfigError
from segrecipes.methods.loss import SegmentationLoss, dice_loss, index_cross_entropy, soft_cross_entropy
from segrecipes.methods.targets import MixedTarget

IGNORE = 255


def logits_from_probs(probs: list[list[list[float]]]) -> torch.Tensor:
    """(H, W, C) probabilities -> (1, C, H, W) logits whose softmax is exactly those probabilities."""
    return torch.tensor(probs).log().permute(2, 0, 1).unsqueeze(0)


# 3 classes on a 2x2 image; pixel (1, 1) is ignored and class 2 is absent from the target.
HAND_PROBS = [
    [[0.5, 0.25, 0.25], [0.25, 0.5, 0.25]],
    [[0.75, 0.125, 0.125], [0.125, 0.125, 0.75]],
]
HAND_TARGET = torch.tensor([[[0, 1], [0, IGNORE]]])
# class 0: I = 0.5 + 0.75 = 1.25, G = 2, P = 0.5 + 0.25 + 0.75 = 1.5 (the ignored pixel's 0.125 excluded)
# class 1: I = 0.5, G = 1, P = 0.25 + 0.5 + 0.125 = 0.875
# class 2: G = 0, not averaged
HAND_DICE = ((1 - (2 * 1.25 + 1e-5) / (2 + 1.5 + 1e-5)) + (1 - (2 * 0.5 + 1e-5) / (1 + 0.875 + 1e-5))) / 2
# CE over the 3 labelled pixels: -(log 0.5 + log 0.5 + log 0.75) / 3
HAND_CE = -(math.log(0.5) + math.log(0.5) + math.log(0.75)) / 3


def onehot_by_hand(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    dense = torch.zeros(target.shape[0], num_classes, *target.shape[1:])
    for b, y, x in itertools.product(*map(range, target.shape)):
        if target[b, y, x] != IGNORE:
            dense[b, target[b, y, x], y, x] = 1.0
    return dense


def naive_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-class loop in float64 with explicit masks."""
    probs = logits.double().softmax(1)
    valid = (target != IGNORE).double()
    losses = []
    for c in range(logits.shape[1]):
        truth = (target == c).double()
        ground_truth = truth.sum()
        if ground_truth == 0:
            continue
        intersection = (probs[:, c] * truth).sum()
        predicted = (probs[:, c] * valid).sum()
        losses.append(1 - (2 * intersection + 1e-5) / (ground_truth + predicted + 1e-5))
    return torch.stack(losses).mean()


def test_dice_matches_hand_computed_example():
    logits = logits_from_probs(HAND_PROBS)
    assert dice_loss(logits, HAND_TARGET, IGNORE).item() == pytest.approx(HAND_DICE, abs=1e-6)


def test_dice_on_dense_onehot_equals_dice_on_indices():
    logits = logits_from_probs(HAND_PROBS)
    dense = onehot_by_hand(HAND_TARGET, 3)
    assert dice_loss(logits, dense).item() == pytest.approx(HAND_DICE, abs=1e-6)


def test_dice_pools_statistics_over_the_batch():
    """Two images in a batch score like one image made of both side by side (not a mean of per-image scores)."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 3, 3, generator=generator)
    target = torch.randint(0, 4, (2, 3, 3), generator=generator)
    target[0, 0, 0] = IGNORE
    target[1] = torch.where(target[1] == 3, 2, target[1])  # class 3 only in the first image
    side_by_side = dice_loss(torch.cat(list(logits), dim=-1)[None], torch.cat(list(target), dim=-1)[None])
    batched = dice_loss(logits, target)
    per_image_mean = (dice_loss(logits[:1], target[:1]) + dice_loss(logits[1:], target[1:])) / 2
    torch.testing.assert_close(batched, side_by_side)
    assert abs(batched.item() - per_image_mean.item()) > 1e-4


def test_dice_value_and_gradient_match_naive_reference():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 5, 6, 7, generator=generator, requires_grad=True)
    target = torch.randint(0, 4, (3, 6, 7), generator=generator)  # class 4 absent
    target[torch.rand(3, 6, 7, generator=generator) < 0.2] = IGNORE
    ours = dice_loss(logits, target)
    (grad,) = torch.autograd.grad(ours, logits)
    reference = naive_dice(logits, target)
    (reference_grad,) = torch.autograd.grad(reference, logits)
    torch.testing.assert_close(ours.double(), reference, atol=1e-6, rtol=0)
    torch.testing.assert_close(grad, reference_grad, atol=1e-7, rtol=1e-4)
    # ignored pixels get no gradient from Dice
    assert (grad.permute(0, 2, 3, 1)[target == IGNORE] == 0).all()


def test_dice_runs_in_fp32_under_autocast():
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 4, 4, generator=generator).bfloat16()
    target = torch.randint(0, 3, (2, 4, 4), generator=generator)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = dice_loss(logits, target)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss.double(), naive_dice(logits.float(), target), atol=1e-6, rtol=0)


def test_soft_ce_with_onehot_target_equals_index_ce_with_ignored_pixels():
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 4, 5, 5, generator=generator)
    target = torch.randint(0, 4, (2, 5, 5), generator=generator)
    target[:, 0] = IGNORE
    expected = F.cross_entropy(logits, target, ignore_index=IGNORE)
    torch.testing.assert_close(soft_cross_entropy(logits, onehot_by_hand(target, 4)), expected)
    torch.testing.assert_close(index_cross_entropy(logits, target, IGNORE), expected)


def test_soft_ce_hand_example_is_renormalized_by_mass():
    # pixel A: target (0.7, 0.3), probs (0.5, 0.5); pixel B: mass 0.3 on class 1, probs (0.75, 0.25)
    logits = logits_from_probs([[[0.5, 0.5], [0.75, 0.25]]])
    target = torch.tensor([[0.7, 0.0], [0.3, 0.3]]).view(2, 1, 2).unsqueeze(0)
    expected = -(0.7 * math.log(0.5) + 0.3 * math.log(0.5) + 0.3 * math.log(0.25)) / 1.3
    assert soft_cross_entropy(logits, target).item() == pytest.approx(expected, abs=1e-6)


def test_no_labelled_pixels_gives_zero_not_nan():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    ignored = torch.full((1, 2, 2), IGNORE)
    loss = SegmentationLoss(ce_weight=1.0, dice_weight=1.0)
    for target in (ignored, torch.zeros(1, 3, 2, 2)):
        value = loss(logits, target)
        (grad,) = torch.autograd.grad(value, logits)
        assert value.item() == 0.0 and torch.isfinite(grad).all() and (grad == 0).all()


def test_reference_weighting_combines_ce_and_dice():
    logits = logits_from_probs(HAND_PROBS)
    loss = SegmentationLoss.named("dice_ce", ignore_index=IGNORE)
    assert loss(logits, HAND_TARGET).item() == pytest.approx(0.375 * HAND_CE + 1.125 * HAND_DICE, abs=1e-6)
    assert SegmentationLoss()(logits, HAND_TARGET).item() == pytest.approx(HAND_CE, abs=1e-6)
    assert SegmentationLoss(0.0, 1.0)(logits, HAND_TARGET).item() == pytest.approx(HAND_DICE, abs=1e-6)


def test_mismatched_shapes_and_weights_are_refused():
    loss = SegmentationLoss()
    with pytest.raises(ConfigError, match="does not fit"):
        loss(torch.randn(1, 3, 4, 4), torch.zeros(1, 4, 4, 4))
    with pytest.raises(ConfigError, match="does not fit"):
        loss(torch.randn(1, 3, 4, 4), torch.zeros(1, 5, 4, dtype=torch.long))
    with pytest.raises(ConfigError):
        SegmentationLoss(ce_weight=0.0, dice_weight=0.0)


@pytest.mark.parametrize("dense", [False, True], ids=["index", "dense"])
def test_dice_gradient_passes_numerical_gradcheck(dense):
    generator = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 3, 3, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 2, (2, 3, 4), generator=generator)
    target[:, 0] = IGNORE  # ignored in both images: zero mass in the dense blend below
    if dense:  # a MixUp-like target: 0.7 / 0.3 blend of two label maps
        target = 0.7 * onehot_by_hand(target, 3) + 0.3 * onehot_by_hand(target.flip(0), 3)
        target = target.double()
    assert torch.autograd.gradcheck(lambda x: dice_loss(x, target), (logits,))


@pytest.mark.parametrize("dense", [False, True], ids=["index", "dense"])
def test_half_precision_logits_are_scored_in_fp32(dense):
    """No autocast, no .float() by the caller: the loss upcasts inside its softmax."""
    generator = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 4, 5, 5, generator=generator).bfloat16()
    target = torch.randint(0, 4, (2, 5, 5), generator=generator)
    target[:, 0] = IGNORE
    if dense:
        target = onehot_by_hand(target, 4)
    loss = SegmentationLoss(0.375, 1.125)
    value = loss(logits, target)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, loss(logits.float(), target), atol=1e-6, rtol=1e-6)


# --- the fused pass against the dense definition (SPEC §2) -------------------------------------------


def dense_reference(logits: torch.Tensor, dense: torch.Tensor, ce_weight: float, dice_weight: float) -> torch.Tensor:
    """The definition, written out on the dense target in float64: CE renormalized by the total mass,
    Dice over pixels with mass, averaged over the classes present."""
    probs = logits.double().softmax(1)
    dense = dense.double()
    mass = dense.sum(1, keepdim=True)
    cross_entropy = -(dense * probs.log()).sum() / mass.sum()
    with_mass = (mass > 0).double()
    intersection = (probs * dense).sum((0, 2, 3))
    predicted = (probs * with_mass).sum((0, 2, 3))
    truth = dense.sum((0, 2, 3))
    per_class = 1 - (2 * intersection + 1e-5) / (truth + predicted + 1e-5)
    present = truth > 0
    return ce_weight * cross_entropy + dice_weight * per_class[present].mean()


def _problem(seed: int, classes: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, classes, 5, 7, generator=generator) * 3
    target = torch.randint(0, classes - 2, (3, 5, 7), generator=generator)  # the last 2 classes absent
    target[torch.rand(target.shape, generator=generator) < 0.25] = IGNORE
    target[1, :2] = IGNORE
    return logits, target


def _value_and_grad(loss_fn, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = logits.detach().clone().requires_grad_()
    value = loss_fn(logits)
    (grad,) = torch.autograd.grad(value, logits)
    return value.detach(), grad


@pytest.mark.parametrize(("ce_weight", "dice_weight"), [(0.375, 1.125), (1.0, 0.0), (0.0, 1.0)])
@pytest.mark.parametrize("mixed", [False, True], ids=["index", "mixup"])
def test_fused_loss_equals_the_dense_definition_in_value_and_gradient(ce_weight, dice_weight, mixed) -> None:
    logits, target = _problem(1)
    if mixed:  # MixUp's form: the partner of image i is image perm[i], weight 0.3
        target = MixedTarget(target, target[torch.tensor([2, 0, 1])], 0.3)
        dense = target.dense(6, IGNORE)
    else:
        dense = onehot_by_hand(target, 6)
    loss = SegmentationLoss(ce_weight, dice_weight, IGNORE)
    value, grad = _value_and_grad(lambda x: loss(x, target), logits)
    expected, expected_grad = _value_and_grad(lambda x: dense_reference(x, dense, ce_weight, dice_weight), logits)
    torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad.double(), expected_grad.double(), rtol=1e-4, atol=1e-7)


def test_a_mixed_target_and_its_dense_form_give_the_same_loss() -> None:
    """A user's own dense target still works, and agrees with the index form MixUp carries."""
    logits, target = _problem(2)
    mixed = MixedTarget(target, target.flip(0), 0.4)
    loss = SegmentationLoss.named("dice_ce", IGNORE)
    value, grad = _value_and_grad(lambda x: loss(x, mixed), logits)
    dense_value, dense_grad = _value_and_grad(lambda x: loss(x, mixed.dense(6, IGNORE)), logits)
    torch.testing.assert_close(value, dense_value, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, dense_grad, rtol=1e-4, atol=1e-7)


def test_fused_gradient_passes_numerical_gradcheck_on_a_mixed_target() -> None:
    logits, target = _problem(3, classes=4)
    target = target.clamp(max=3).masked_fill(target == IGNORE, IGNORE)
    mixed = MixedTarget(target, target.roll(1, 0), 0.35)
    logits = logits.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: SegmentationLoss(0.375, 1.125, IGNORE)(x, mixed), (logits,))


def test_half_precision_logits_give_the_fp32_result_and_a_half_gradient() -> None:
    logits, target = _problem(4)
    mixed = MixedTarget(target, target.flip(0), 0.25)
    half = logits.bfloat16().requires_grad_()
    loss = SegmentationLoss.named("dice_ce", IGNORE)
    value = loss(half, mixed)
    (grad,) = torch.autograd.grad(value, half)
    assert value.dtype == torch.float32 and grad.dtype == torch.bfloat16
    reference, reference_grad = _value_and_grad(lambda x: loss(x, mixed), half.detach().float())
    torch.testing.assert_close(value, reference, rtol=1e-6, atol=1e-6)  # the same fp32 numbers from bf16 inputs
    torch.testing.assert_close(grad.float(), reference_grad, rtol=1e-2, atol=1e-4)  # rounded to bf16 at the end


def test_a_mixed_target_with_no_labelled_pixel_gives_zero() -> None:
    logits = torch.randn(2, 3, 2, 2, requires_grad=True)
    ignored = torch.full((2, 2, 2), IGNORE)
    value = SegmentationLoss.named("dice_ce", IGNORE)(logits, MixedTarget(ignored, ignored, 0.3))
    (grad,) = torch.autograd.grad(value, logits)
    assert value.item() == 0.0 and (grad == 0).all()
