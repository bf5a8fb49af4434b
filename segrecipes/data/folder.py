"""A user's own data: ``images/{train,val}`` and ``masks/{train,val}`` paired by file stem."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from .errors import DataError
from .files import SegmentationFiles, SplitLayout, label_table, require_dir

CLASSES_FILE = "classes.txt"


def split_layout(
    root: str | Path, split: str, num_classes: int | None = None, ignore_value: int = 255,
    reduce_zero_label: bool = False,
) -> SplitLayout:
    """Masks hold raw class indices (8- or 16-bit PNG).

    Class names come from ``classes.txt`` in ``root`` (one per line), else ``num_classes`` names them
    ``class_0``... The raw value ``ignore_value`` is not evaluated; ``reduce_zero_label`` also ignores
    raw 0 and shifts v -> v - 1 (the mmseg convention for datasets where 0 means "unlabelled").
    """
    root = require_dir(Path(root))
    class_names = read_class_names(root, num_classes)
    ignore_values = (ignore_value, 0) if reduce_zero_label else (ignore_value,)
    table = label_table(len(class_names), ignore_values, shift=int(reduce_zero_label))
    return SplitLayout(root / "images" / split, root / "masks" / split, tuple(class_names), table)


class SegmentationFolder(SegmentationFiles):
    """One split of a folder dataset (see :func:`split_layout`)."""

    def __init__(
        self,
        root: str | Path,
        split: Literal["train", "val"],
        num_classes: int | None = None,
        ignore_value: int = 255,
        reduce_zero_label: bool = False,
    ) -> None:
        super().__init__(split_layout(root, split, num_classes, ignore_value, reduce_zero_label))


def read_class_names(root: Path, num_classes: int | None) -> list[str]:
    """The names in ``root/classes.txt``, or ``class_0``.. ``class_{n-1}`` without the file."""
    path = root / CLASSES_FILE
    if not path.exists():
        if num_classes is None:
            raise DataError(f"{path}: not found; write one class name per line there or set data.num_classes")
        return [f"class_{index}" for index in range(num_classes)]
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise DataError(f"{path}: no class names (expected one per line)")
    if num_classes is not None and num_classes != len(names):
        raise DataError(f"{path}: lists {len(names)} classes but data.num_classes is {num_classes}")
    return names
