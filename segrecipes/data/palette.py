"""Colour masks: each class drawn in its own RGB colour, as many annotation tools save them.

A palette is read from a text file (``R G B name`` per line), a CSV (``name,r,g,b`` or ``r,g,b,name``,
header optional) or the palette of an indexed PNG, in class order. Colours become classes in one
vectorized lookup: ``r << 16 | g << 8 | b`` searched in the palette's sorted codes.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from .errors import DataError


@dataclass(frozen=True, eq=False)
class Palette:
    """``colours`` (K, 3) uint8, row k the colour of class k; ``names`` from the file, when it has them;
    ``source``: where the colours come from, as messages name it."""

    colours: torch.Tensor
    names: tuple[str, ...] | None = None
    source: str = "data.palette"
    _sorted: tuple[torch.Tensor, torch.Tensor] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        codes = colour_codes(self.colours.t().unsqueeze(-1)).flatten()
        if codes.unique().numel() != codes.numel():
            raise DataError(f"{self.source}: a colour is listed twice")
        order = codes.argsort()
        object.__setattr__(self, "_sorted", (codes[order], order.to(torch.int16)))

    def __len__(self) -> int:
        return len(self.colours)

    def classes(self, codes: torch.Tensor) -> torch.Tensor:
        """Class index (int16) per colour code; -1 for a colour not in the palette."""
        sorted_codes, classes = self._sorted
        position = torch.searchsorted(sorted_codes, codes.flatten()).clamp_max(len(sorted_codes) - 1)
        found = sorted_codes[position] == codes.flatten()
        return torch.where(found, classes[position], torch.tensor(-1, dtype=torch.int16)).view(codes.shape)


def colour_codes(rgb: torch.Tensor) -> torch.Tensor:
    """(3, H, W) colours -> (H, W) int32 codes ``r << 16 | g << 8 | b``."""
    rgb = rgb.int()
    return (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]


def colour_of(code: int) -> tuple[int, int, int]:
    return code >> 16 & 255, code >> 8 & 255, code & 255


def read_palette(path: str | Path, num_classes: int | None = None) -> Palette:
    """The palette in ``path`` (see the module docstring); an indexed PNG gives its first ``num_classes``
    colours, so it needs the class count."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"data.palette: {path}: file not found")
    if path.suffix.lower() in (".png", ".gif"):
        return _image_palette(path, num_classes)
    rows = _csv_rows(path) if path.suffix.lower() == ".csv" else _text_rows(path)
    colours, names = [], []
    for line, row in rows:
        numbers = [i for i, cell in enumerate(row) if cell.strip().lstrip("-").isdigit()]
        start = 0 if numbers[:3] == [0, 1, 2] else 1 if numbers[:3] == [1, 2, 3] else None
        if start is None:
            if line == 1 and not numbers:  # a CSV header
                continue
            raise DataError(f"data.palette: {path} line {line}: expected 'R G B name' or 'name,R,G,B'")
        rgb = [int(row[start + i]) for i in range(3)]
        if not all(0 <= value <= 255 for value in rgb):
            raise DataError(f"data.palette: {path} line {line}: colour values must be 0..255, got {rgb}")
        colours.append(rgb)
        rest = row[3:] if start == 0 else row[:1]
        names.append(" ".join(cell.strip() for cell in rest).strip())
    if not colours:
        raise DataError(f"data.palette: {path}: no colours")
    named = tuple(names) if all(names) else None
    return Palette(torch.tensor(colours, dtype=torch.uint8), named)


def _text_rows(path: Path) -> list[tuple[int, list[str]]]:
    lines = enumerate(path.read_text().splitlines(), 1)
    return [(number, line.split()) for number, line in lines if line.strip() and not line.lstrip().startswith("#")]


def _csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    with path.open(newline="") as handle:
        return [(number, row) for number, row in enumerate(csv.reader(handle), 1) if any(cell.strip() for cell in row)]


def _image_palette(path: Path, num_classes: int | None) -> Palette:
    with Image.open(path) as image:
        if image.mode != "P":
            raise DataError(f"data.palette: {path}: a {image.mode} image, not an indexed (palette) PNG")
        flat = image.getpalette() or []
    if num_classes is None:
        raise DataError(f"data.palette: {path}: an indexed PNG's palette needs the class count (classes.txt or "
                        "data.num_classes)")
    if len(flat) < 3 * num_classes:
        raise DataError(f"data.palette: {path}: its palette has {len(flat) // 3} colours, fewer than {num_classes} "
                        "classes")
    return Palette(torch.tensor(flat[: 3 * num_classes], dtype=torch.uint8).view(num_classes, 3))
