"""A procedural dataset that needs no files: shapes and textures on a grainy background.

Every colour is random, so colour alone gives nothing away: a model has to learn shape (disc,
rectangle, triangle) and texture (stripes, checkerboard). Sample ``i`` of a split is drawn from a
generator seeded with ``(seed, split, i)``, so it is the same in every worker, run and machine.

With more than the 6 natural classes (``num_classes=150`` mimics ADE20k's class count for
benchmarks), class ``c`` is drawn as kind ``(c - 1) % 5`` in a colour of its own, so the extra
classes are told apart by colour.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset

from .files import IGNORE_INDEX
from .normalize import ChannelStats
from .seeds import derive_seed

CLASS_NAMES = ("background", "disc", "rectangle", "triangle", "stripes", "checkerboard")
_KINDS = len(CLASS_NAMES) - 1
_DISC, _RECTANGLE, _TRIANGLE, _STRIPES, _CHECKERBOARD = range(1, 6)
# A grainy background and smooth objects: what a real scene looks like, and a local cue to start from.
_BACKGROUND_NOISE_STD, _OBJECT_NOISE_STD = 20.0, 6.0


def class_names(num_classes: int = len(CLASS_NAMES)) -> list[str]:
    """``background``, the five kinds, then ``disc_2``, ``rectangle_2``... for further classes."""
    names = ["background"]
    for label in range(1, num_classes):
        group = (label - 1) // _KINDS
        names.append(CLASS_NAMES[(label - 1) % _KINDS + 1] + (f"_{group + 1}" if group else ""))
    return names


class SyntheticShapes(Dataset):
    """``ds[i] -> (image, mask)``: uint8 (3, S, S) and uint8 (S, S) class indices, with 2-4 objects; the
    image as float32 normalized by ``stats`` when given (weights that expect other statistics than ImageNet's)."""

    ignore_index = IGNORE_INDEX

    def __init__(
        self, size: int, image_size: int = 96, split: str = "train", seed: int = 0, num_classes: int = len(CLASS_NAMES),
        stats: ChannelStats | None = None,
    ) -> None:
        if not 2 <= num_classes <= IGNORE_INDEX:
            raise ValueError(f"SyntheticShapes: num_classes must be in 2..{IGNORE_INDEX}, got {num_classes}")
        self.size = size
        self.image_size = image_size
        self.split = split
        self.seed = seed
        self.class_names = class_names(num_classes)
        self.stats = stats

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return self.size

    def image_path(self, index: int) -> str:
        return f"synthetic-{self.split}[{index}]"

    def mask_path(self, index: int) -> str:
        return self.image_path(index)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.size:
            raise IndexError(f"{self.image_path(index)}: index out of range (size {self.size})")
        generator = torch.Generator().manual_seed(derive_seed("synthetic", self.seed, self.split, index))
        image, mask = _draw_sample(self.image_size, generator, self.num_classes)
        return (image, mask) if self.stats is None else (self.stats(image), mask)


def _uniform(low: float, high: float, generator: torch.Generator, shape: tuple[int, ...] = ()) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator)


def _distinct_colour(base: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random colour at least 60 levels away from ``base`` in every channel (mod 256)."""
    return (base + _uniform(60, 196, generator, (3,))) % 256


def _class_colour(label: int) -> torch.Tensor:
    """A fixed colour per class, for the classes beyond the natural six."""
    return torch.rand(3, generator=torch.Generator().manual_seed(derive_seed("colour", label))) * 255


def _draw_sample(size: int, generator: torch.Generator, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    y, x = torch.meshgrid(coords, coords, indexing="ij")

    background = _uniform(0, 256, generator, (3,))
    image = background.view(3, 1, 1).expand(3, size, size)
    mask = torch.zeros(size, size, dtype=torch.uint8)

    # One object per cell of a 2 x 2 grid, jittered: objects touch or overlap a little but stay recognizable.
    cells = torch.randperm(4, generator=generator)[: int(torch.randint(2, 5, (), generator=generator))].tolist()
    for cell in cells:
        label = int(torch.randint(1, num_classes, (), generator=generator))
        kind = (label - 1) % _KINDS + 1
        jitter_x, jitter_y = _uniform(-0.08, 0.08, generator, (2,)).tolist()
        centre_x, centre_y = 0.25 + 0.5 * (cell % 2) + jitter_x, 0.25 + 0.5 * (cell // 2) + jitter_y
        radius = float(_uniform(0.15, 0.23, generator))
        angle = float(_uniform(0, math.pi, generator))
        # Coordinates in the object's own rotated frame.
        u = (x - centre_x) * math.cos(angle) + (y - centre_y) * math.sin(angle)
        v = -(x - centre_x) * math.sin(angle) + (y - centre_y) * math.cos(angle)
        region = _region(kind, u, v, radius, generator)
        own_colour = _class_colour(label) if num_classes > len(CLASS_NAMES) else None
        fill = _fill(kind, u, v, size, background, generator, own_colour)
        image = torch.where(region, fill, image)
        mask[region] = label

    noise_std = torch.where(mask > 0, _OBJECT_NOISE_STD, _BACKGROUND_NOISE_STD)
    image = image + noise_std * torch.randn(image.shape, generator=generator)
    return image.round().clamp(0, 255).to(torch.uint8), mask


def _region(label: int, u: torch.Tensor, v: torch.Tensor, radius: float, generator: torch.Generator) -> torch.Tensor:
    if label == _DISC:
        return u.square() + v.square() < radius**2
    if label == _TRIANGLE:
        # Equilateral triangle of about the disc's area (circumradius 1.5 r): inside its three edges.
        inradius = 0.75 * radius
        normals = [math.pi / 2 + edge * 2 * math.pi / 3 for edge in range(3)]
        inside = [u * math.cos(normal) + v * math.sin(normal) < inradius for normal in normals]
        return inside[0] & inside[1] & inside[2]
    # Rectangles are long bars, unlike any disc or triangle; textures fill large, squarish patches.
    if label == _RECTANGLE:
        half_width, half_height = 1.25 * radius, radius * float(_uniform(0.35, 0.55, generator))
    else:
        half_width, half_height = 1.1 * radius, radius * float(_uniform(0.75, 1.1, generator))
    return (u.abs() < half_width) & (v.abs() < half_height)


def _fill(
    label: int, u: torch.Tensor, v: torch.Tensor, size: int, background: torch.Tensor, generator: torch.Generator,
    own_colour: torch.Tensor | None = None,
) -> torch.Tensor:
    """The (3, S, S) colours of an object: one colour for shapes, two alternating for textures
    (random ones, or ``own_colour`` and its complement)."""
    colour = _distinct_colour(background, generator) if own_colour is None else own_colour
    if label not in (_STRIPES, _CHECKERBOARD):
        return colour.view(3, 1, 1).expand(3, size, size)
    second = _distinct_colour(colour, generator) if own_colour is None else 255 - own_colour
    # Coarse stripes and a fine checkerboard differ in structure and in scale.
    low, high = (12, 18) if label == _STRIPES else (6, 8)
    frequency = 2 * math.pi * size / float(_uniform(low, high, generator))  # period in pixels
    pattern = torch.sin(frequency * u) > 0
    if label == _CHECKERBOARD:
        pattern = pattern ^ (torch.sin(frequency * v) > 0)
    return torch.where(pattern, colour.view(3, 1, 1), second.view(3, 1, 1))
