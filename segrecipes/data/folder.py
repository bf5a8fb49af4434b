"""A user's own data: ``images/{train,val}`` and ``masks/{train,val}`` paired by file stem."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch

from .errors import DataError
from .files import IGNORE_INDEX, SegmentationFiles, SplitLayout, label_table, require_dir
from .normalize import ChannelStats
from .palette import read_palette

LabelMap = Mapping[int, int | str]
_MAX_RAW = (1 << 16) - 1

CLASSES_FILE = "classes.txt"


def split_layout(
    root: str | Path, split: str, num_classes: int | None = None, ignore_value: int = 255,
    reduce_zero_label: bool = False, label_map: LabelMap | None = None, palette: str | Path | None = None,
    channels: int = 3, stats: ChannelStats | None = None,
) -> SplitLayout:
    """Masks hold raw class indices (8- or 16-bit PNG, or an integer array), or colours with a ``palette``.

    Class names come from ``classes.txt`` in ``root`` (one per line), else from the palette file, else
    ``num_classes`` names them ``class_0``... The raw value ``ignore_value`` is not evaluated;
    ``reduce_zero_label`` also ignores raw 0 and shifts v -> v - 1 (the mmseg convention for datasets
    where 0 means "unlabelled"). ``label_map`` then maps stored values to classes or ``"ignore"``
    (``{0: 0, 255: 1}`` for binary 0/255 masks); values it leaves out keep the rule above.
    """
    root = require_dir(Path(root))
    colours = None
    if palette is not None:
        if label_map:
            raise DataError("data.label_map and data.palette: give one (a palette maps colours to classes itself)")
        colours = read_palette(palette, _class_count(root, num_classes))
    class_names = read_class_names(root, num_classes, colours.names if colours else None)
    if colours is not None and len(colours) != len(class_names):
        raise DataError(f"data.palette: {palette} has {len(colours)} colours for {len(class_names)} classes")
    ignore_values = (ignore_value, 0) if reduce_zero_label else (ignore_value,)
    table = label_table(len(class_names), ignore_values, shift=int(reduce_zero_label))
    if label_map:
        apply_label_map(table, label_map, len(class_names))
    return SplitLayout(root / "images" / split, root / "masks" / split, tuple(class_names), table, colours,
                       channels, stats)


def apply_label_map(table: torch.Tensor, label_map: LabelMap, num_classes: int) -> None:
    """Point each stored value of ``label_map`` at its class (or at ignore) in ``table``."""
    for value, target in label_map.items():
        if not 0 <= int(value) <= _MAX_RAW:
            raise DataError(f"data.label_map: stored value {value} is outside 0..{_MAX_RAW}")
        if target == "ignore":
            table[int(value)] = IGNORE_INDEX
        elif isinstance(target, int) and 0 <= target < num_classes:
            table[int(value)] = target
        else:
            raise DataError(f"data.label_map: {value}: {target!r} is neither a class 0..{num_classes - 1} nor 'ignore'")


def _class_count(root: Path, num_classes: int | None) -> int | None:
    path = root / CLASSES_FILE
    return len(read_class_names(root, num_classes)) if path.exists() else num_classes


class SegmentationFolder(SegmentationFiles):
    """One split of a folder dataset (see :func:`split_layout`)."""

    def __init__(
        self,
        root: str | Path,
        split: Literal["train", "val"],
        num_classes: int | None = None,
        ignore_value: int = 255,
        reduce_zero_label: bool = False,
        label_map: LabelMap | None = None,
        palette: str | Path | None = None,
    ) -> None:
        super().__init__(split_layout(root, split, num_classes, ignore_value, reduce_zero_label, label_map, palette))


def read_class_names(root: Path, num_classes: int | None, palette_names: tuple[str, ...] | None = None) -> list[str]:
    """The names in ``root/classes.txt``, else the palette's, else ``class_0``.. ``class_{n-1}``."""
    path = root / CLASSES_FILE
    if not path.exists():
        if palette_names is not None and num_classes in (None, len(palette_names)):
            return list(palette_names)
        if num_classes is None:
            raise DataError(f"{path}: not found; write one class name per line there or set data.num_classes")
        return [f"class_{index}" for index in range(num_classes)]
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise DataError(f"{path}: no class names (expected one per line)")
    if num_classes is not None and num_classes != len(names):
        raise DataError(f"{path}: lists {len(names)} classes but data.num_classes is {num_classes}")
    return names
