"""CVAT's "Segmentation mask" export (``cvat:PATH``): the VOC layout (:mod:`segrecipes.data.voc`) with
colour masks in ``SegmentationClass/`` and the classes in ``labelmap.txt``, one ``name:R,G,B:parts:actions``
line each, in order. CVAT writes ``background:0,0,0::`` first, so unlabelled pixels are the class
``background``; a task without subsets has one split, ``default.txt`` (see ``data.val_fraction``)."""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import DataError
from .files import SplitLayout, label_table
from .palette import Palette
from .voc import IMAGES, MASKS, export_folder, split_list_listing

LABELMAP = "labelmap.txt"


def split_layout(root: str | Path, split: str, val_fraction: float = 0.0, split_seed: int = 0) -> SplitLayout:
    """Colour masks read through the labelmap; a colour it lacks is a bad label naming the labelmap."""
    base = export_folder(Path(root))
    palette = read_labelmap(base / LABELMAP)
    table = label_table(len(palette), ignore_values=())
    listing = split_list_listing(base, split, val_fraction, split_seed)
    return SplitLayout(base / IMAGES, base / MASKS, palette.names or (), table, palette, listing=listing)


def read_labelmap(path: Path) -> Palette:
    """The labels of ``labelmap.txt`` in file order (``#`` lines are comments)."""
    if not path.is_file():
        raise DataError(f"{path}: not found (a CVAT segmentation mask export has one beside ImageSets/)")
    names, colours = [], []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, rest = line.partition(":")
        values = rest.partition(":")[0].split(",")
        if not name.strip() or len(values) != 3 or not all(value.strip().isdigit() for value in values):
            raise DataError(f"{path} line {number}: expected 'label:R,G,B::', got {line.strip()!r}")
        rgb = [int(value) for value in values]
        if max(rgb) > 255:
            raise DataError(f"{path} line {number}: colour values must be 0..255, got {rgb}")
        names.append(name.strip())
        colours.append(rgb)
    if not names:
        raise DataError(f"{path}: no labels")
    return Palette(torch.tensor(colours, dtype=torch.uint8), tuple(names), source=str(path))
