"""ADE20k / SceneParsing-150 in the official ``ADEChallengeData2016`` layout (SPEC §2)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from .errors import DataError
from .files import SegmentationFiles, SplitLayout, label_table, require_dir

CLASS_NAMES = (Path(__file__).with_name("ade20k_classes.txt")).read_text().splitlines()
SPLIT_FOLDERS = {"train": "training", "val": "validation"}


def split_layout(root: str | Path, split: str) -> SplitLayout:
    """``root`` is ``ADEChallengeData2016`` or its parent. Raw label 0 ("other") is ignored and
    1..150 become classes 0..149."""
    if split not in SPLIT_FOLDERS:
        raise DataError(f"ADE20k has no split {split!r}: use 'train' or 'val'")
    base = dataset_folder(Path(root))
    folder = SPLIT_FOLDERS[split]
    table = label_table(len(CLASS_NAMES), ignore_values=(0,), shift=1)
    return SplitLayout(base / "images" / folder, base / "annotations" / folder, tuple(CLASS_NAMES), table)


class ADE20k(SegmentationFiles):
    """One split of ADE20k (see :func:`split_layout`); a split whose folder is absent is empty."""

    def __init__(self, root: str | Path, split: Literal["train", "val"]) -> None:
        super().__init__(split_layout(root, split))


def dataset_folder(root: Path) -> Path:
    """The ``ADEChallengeData2016`` folder: ``root`` itself or its child of that name."""
    require_dir(root)
    for candidate in (root / "ADEChallengeData2016", root):
        if (candidate / "images").is_dir() and (candidate / "annotations").is_dir():
            return candidate
    raise DataError(f"{root}: not an ADE20k folder (expected ADEChallengeData2016/images and /annotations inside)")
