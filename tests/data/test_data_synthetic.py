"""The procedural dataset: deterministic per (seed, split, index), every class present, colour uninformative."""

from __future__ import annotations

import time

import pytest
import torch

from segrecipes.data.synthetic import SyntheticShapes

STRIPES, CHECKERBOARD = 4, 5
SOLID_SHAPES = (1, 2, 3)


@pytest.fixture(scope="module")
def samples() -> list[tuple[torch.Tensor, torch.Tensor]]:
    dataset = SyntheticShapes(64, image_size=64)
    return [dataset[index] for index in range(64)]


def test_types_and_shapes(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    image, mask = samples[0]
    assert image.shape == (3, 64, 64) and image.dtype == torch.uint8
    assert mask.shape == (64, 64) and mask.dtype == torch.uint8
    dataset = SyntheticShapes(5, image_size=40)
    assert len(dataset) == 5 and dataset.num_classes == len(dataset.class_names) == 6
    assert dataset.ignore_index == 255 and dataset.image_path(3) == "synthetic-train[3]"
    with pytest.raises(IndexError):
        dataset[5]


def test_deterministic_per_seed_split_and_index() -> None:
    dataset = SyntheticShapes(10, image_size=32, seed=4)
    later = dataset[7]
    fresh = SyntheticShapes(10, image_size=32, seed=4)[7]  # other instance, other access order
    assert torch.equal(later[0], fresh[0]) and torch.equal(later[1], fresh[1])
    for other in (
        SyntheticShapes(10, image_size=32, seed=5)[7],
        SyntheticShapes(10, image_size=32, seed=4, split="val")[7],
        dataset[6],
    ):
        assert not torch.equal(later[0], other[0])


def test_every_class_appears_and_each_image_has_objects(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    counts = torch.zeros(6)
    for _, mask in samples:
        present = mask.unique()
        assert 0 in present and len(present) >= 2
        counts += torch.bincount(mask.flatten(), minlength=6)
    fractions = counts / counts.sum()
    assert 0.5 < fractions[0] < 0.9  # mostly background
    assert (fractions[1:] > 0.03).all()  # every object class is common enough to learn


def _pixels(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    colours = torch.cat([image.reshape(3, -1).T.float() for image, _ in samples])
    labels = torch.cat([mask.flatten() for _, mask in samples])
    return colours, labels


def test_colour_alone_does_not_tell_the_classes_apart(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    # A nearest-mean-colour classifier fit on half the images stays near chance (1/5) on the other half.
    colours, labels = _pixels(samples[:32])
    means = torch.stack([colours[labels == label].mean(dim=0) for label in range(1, 6)])
    test_colours, test_labels = _pixels(samples[32:])
    objects = test_labels > 0
    predicted = torch.cdist(test_colours[objects], means).argmin(dim=1) + 1
    accuracy = (predicted == test_labels[objects]).float().mean().item()
    assert accuracy < 0.3


def test_textures_vary_locally_and_solid_shapes_do_not(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    def mean_spread(labels: tuple[int, ...]) -> float:
        """Mean over objects of the pixel standard deviation inside the object (noise alone gives ~16)."""
        spreads = [
            image[:, mask == label].float().std(dim=1).mean()
            for image, mask in samples
            for label in labels
            if (mask == label).sum() > 50
        ]
        return torch.stack(spreads).mean().item()

    assert mean_spread((STRIPES, CHECKERBOARD)) > 1.8 * mean_spread(SOLID_SHAPES)


def test_generation_is_fast() -> None:
    dataset = SyntheticShapes(32, image_size=96)
    start = time.perf_counter()
    for index in range(32):
        dataset[index]
    assert time.perf_counter() - start < 2.0
