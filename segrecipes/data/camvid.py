"""CamVid, 11 classes, in the SegNet layout (``train/ trainannot/ val/ valannot/ test/ testannot/``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from .errors import DataError
from .files import SegmentationFiles, label_table, require_dir

CLASS_NAMES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)  # fmt: skip
VOID_LABEL = 11  # "Unlabelled": not evaluated, as in the SegNet prototxt
_SPLITS = ("train", "val", "test")


class CamVid(SegmentationFiles):
    """Raw labels 0..10 are the classes; 11 (void) is ignored. A split whose folder is absent is empty."""

    def __init__(self, root: str | Path, split: Literal["train", "val", "test"]) -> None:
        if split not in _SPLITS:
            raise DataError(f"CamVid has no split {split!r}: use one of {', '.join(_SPLITS)}")
        root = require_dir(Path(root))
        table = label_table(len(CLASS_NAMES), ignore_values=(VOID_LABEL,))
        super().__init__(root / split, root / f"{split}annot", CLASS_NAMES, table)
