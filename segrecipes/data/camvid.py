"""CamVid, 11 classes, in the SegNet layout (``train/ trainannot/ val/ valannot/ test/ testannot/``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from .errors import DataError
from .files import SegmentationFiles, SplitLayout, label_table, require_dir

CLASS_NAMES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)  # fmt: skip
VOID_LABEL = 11  # "Unlabelled": not evaluated, as in the SegNet prototxt
SPLITS = ("train", "val", "test")


def split_layout(root: str | Path, split: str) -> SplitLayout:
    """Raw labels 0..10 are the classes; 11 (void) is ignored."""
    if split not in SPLITS:
        raise DataError(f"CamVid has no split {split!r}: use one of {', '.join(SPLITS)}")
    root = require_dir(Path(root))
    table = label_table(len(CLASS_NAMES), ignore_values=(VOID_LABEL,))
    return SplitLayout(root / split, root / f"{split}annot", CLASS_NAMES, table)


class CamVid(SegmentationFiles):
    """One split of CamVid (see :func:`split_layout`); a split whose folder is absent is empty."""

    def __init__(self, root: str | Path, split: Literal["train", "val", "test"]) -> None:
        super().__init__(split_layout(root, split))
