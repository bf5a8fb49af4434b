"""MixUp for segmentation: checked pixel by pixel against one-hot maps written out by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segrecipes.errors import ConfigError
from segrecipes.methods import MixUp, StepContext
from segrecipes.methods.mixup import mixup_segmentation
from segrecipes.methods.targets import MixedTarget

IGNORE = 255
NUM_CLASSES = 4


def batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(5, 3, 3, 4, generator=generator)
    target = torch.randint(0, NUM_CLASSES, (5, 3, 4), generator=generator)
    target[torch.rand(5, 3, 4, generator=generator) < 0.3] = IGNORE
    return images, target


def recover_partners(images, mixed, mixing) -> list[int]:
    """For each i, the j with mixed[i] == (1 - m) x[i] + m x[j] (images are distinct random draws)."""
    partners = []
    for i in range(len(images)):
        errors = [(mixed[i] - ((1 - mixing) * images[i] + mixing * images[j])).abs().max() for j in range(len(images))]
        j = int(torch.tensor(errors).argmin())
        assert errors[j] < 1e-6, "images are not an exact (1 - m, m) blend of two batch images"
        partners.append(j)
    return partners


def onehot_by_hand(label: int) -> torch.Tensor:
    vector = torch.zeros(NUM_CLASSES)
    if label != IGNORE:
        vector[label] = 1.0
    return vector


@pytest.mark.parametrize("seed", range(4))
def test_images_and_targets_are_mixed_exactly(seed):
    images, target = batch(seed)
    generator = torch.Generator().manual_seed(seed)
    mixed, mixed_target, mixing = mixup_segmentation(images, target, NUM_CLASSES, alpha=0.5, generator=generator)
    assert 0.0 <= mixing <= 0.5
    partners = recover_partners(images, mixed, mixing)
    assert sorted(partners) == list(range(len(images)))  # one permutation of the batch
    # the two index maps and the weight, no dense map: the second map is the partners' labels
    assert isinstance(mixed_target, MixedTarget) and mixed_target.mixing == mixing
    assert torch.equal(mixed_target.first, target) and torch.equal(mixed_target.second, target[partners])
    dense = mixed_target.dense(NUM_CLASSES, IGNORE)
    assert dense.shape == (5, NUM_CLASSES, 3, 4) and dense.dtype == torch.float32
    for i, j in enumerate(partners):
        for y in range(3):
            for x in range(4):
                expected = (1 - mixing) * onehot_by_hand(int(target[i, y, x])) + mixing * onehot_by_hand(
                    int(target[j, y, x])
                )
                torch.testing.assert_close(dense[i, :, y, x], expected)


def test_pixel_mass_is_one_of_four_values_and_zero_where_both_ignored():
    images, target = batch(7)
    mixed, mixed_target, mixing = mixup_segmentation(images, target, NUM_CLASSES, alpha=1.0,
                                                     generator=torch.Generator())
    partners = recover_partners(images, mixed, mixing)
    mass = mixed_target.dense(NUM_CLASSES, IGNORE).sum(1)
    allowed = torch.tensor([0.0, 1 - mixing, mixing, 1.0])
    assert ((mass.unsqueeze(-1) - allowed).abs().min(-1).values < 1e-6).all()
    both_ignored = (target == IGNORE) & (target[partners] == IGNORE)
    assert both_ignored.any() and (mass[both_ignored] == 0).all()


def test_mixing_follows_symmetric_beta():
    """alpha = 1 gives lambda ~ U(0, 1), so mixing = min(lambda, 1 - lambda) ~ U(0, 0.5): mean 0.25."""
    generator = torch.Generator().manual_seed(3)
    images, target = torch.randn(2, 1, 1, 1), torch.zeros(2, 1, 1, dtype=torch.long)
    draws = torch.tensor(
        [mixup_segmentation(images, target, 1, alpha=1.0, generator=generator)[2] for _ in range(2000)]
    )
    assert draws.min() >= 0 and draws.max() <= 0.5
    assert draws.mean().item() == pytest.approx(0.25, abs=0.015)
    assert (draws < 0.25).float().mean().item() == pytest.approx(0.5, abs=0.05)


def test_same_generator_seed_reproduces_the_mix():
    images, target = batch(1)
    first = mixup_segmentation(images, target, NUM_CLASSES, 0.2, generator=torch.Generator().manual_seed(5))
    second = mixup_segmentation(images, target, NUM_CLASSES, 0.2, generator=torch.Generator().manual_seed(5))
    assert first[2] == second[2]
    assert torch.equal(first[0], second[0]) and torch.equal(first[1].second, second[1].second)


def test_dense_target_is_mixed_with_the_same_permutation():
    images, target = batch(2)
    dense_in = torch.stack([torch.stack([onehot_by_hand(int(v)) for v in row.flatten()]) for row in target])
    dense_in = dense_in.view(5, 3, 4, NUM_CLASSES).permute(0, 3, 1, 2) * 0.5  # any dense target
    mixed, dense, mixing = mixup_segmentation(images, dense_in, NUM_CLASSES, 0.5, generator=torch.Generator())
    partners = recover_partners(images, mixed, mixing)
    torch.testing.assert_close(dense, (1 - mixing) * dense_in + mixing * dense_in[partners])


def test_hook_returns_index_maps_that_split_into_microbatches():
    images, target = batch(4)
    torch.manual_seed(0)
    hook = MixUp(num_classes=NUM_CLASSES, alpha=0.2, ignore_index=IGNORE)
    mixed, mixed_target = hook.transform_batch(StepContext(1, 0, 0.0, nn.Identity()), images, target)
    assert mixed.shape == images.shape and mixed_target.shape == target.shape
    chunks = mixed_target.tensor_split(2)
    assert [len(chunk) for chunk in chunks] == [3, 2] and all(c.mixing == mixed_target.mixing for c in chunks)
    assert torch.equal(torch.cat([chunk.second for chunk in chunks]), mixed_target.second)


def test_bad_inputs_are_refused():
    images, target = batch(0)
    with pytest.raises(ConfigError):
        mixup_segmentation(images, target, NUM_CLASSES, alpha=0.0)
    with pytest.raises(ConfigError, match="num_classes"):
        mixup_segmentation(images, torch.rand(5, NUM_CLASSES + 1, 3, 4), NUM_CLASSES, alpha=0.2)


def test_the_permutation_reaches_a_gpu_without_a_blocking_copy(monkeypatch) -> None:
    """A blocking host-to-GPU copy waits for the GPU's queue: once per step, a host-device synchronization
    (what `bench gpu`'s sync check counts). The CPU permutation must go through pinned memory, copied
    asynchronously; on the CPU it is used as it is."""
    from segrecipes.methods import mixup

    perm = torch.randperm(5)
    assert mixup._on(torch.device("cpu"), perm) is perm
    copies = []

    class Pinned:
        def to(self, device, non_blocking=False):
            copies.append((device, non_blocking))
            return perm

    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: Pinned())
    mixup._on(torch.device("cuda", 0), perm)
    assert copies == [(torch.device("cuda", 0), True)]
