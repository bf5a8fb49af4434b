"""ADE20k / SceneParsing-150 in the official ``ADEChallengeData2016`` layout (SPEC §2)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from .errors import DataError
from .files import SegmentationFiles, label_table, require_dir

CLASS_NAMES = (Path(__file__).with_name("ade20k_classes.txt")).read_text().splitlines()
_SPLIT_FOLDERS = {"train": "training", "val": "validation"}


class ADE20k(SegmentationFiles):
    """``root`` is ``ADEChallengeData2016`` or its parent. Raw label 0 ("other") is ignored and
    1..150 become classes 0..149. A split whose folder is absent is empty."""

    def __init__(self, root: str | Path, split: Literal["train", "val"]) -> None:
        if split not in _SPLIT_FOLDERS:
            raise DataError(f"ADE20k has no split {split!r}: use 'train' or 'val'")
        base = _dataset_folder(Path(root))
        folder = _SPLIT_FOLDERS[split]
        table = label_table(len(CLASS_NAMES), ignore_values=(0,), shift=1)
        super().__init__(base / "images" / folder, base / "annotations" / folder, CLASS_NAMES, table)


def _dataset_folder(root: Path) -> Path:
    require_dir(root)
    for candidate in (root / "ADEChallengeData2016", root):
        if (candidate / "images").is_dir() and (candidate / "annotations").is_dir():
            return candidate
    raise DataError(f"{root}: not an ADE20k folder (expected ADEChallengeData2016/images and /annotations inside)")
