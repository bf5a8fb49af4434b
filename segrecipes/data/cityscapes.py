"""Cityscapes (``cityscapes:PATH``) in the official layout: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png``
with ``gtFine/<split>/<city>/*_gtFine_labelIds.png``.

The masks hold the 34 label ids; the official table (``cityscapes_labels.csv``, copied from
cityscapesScripts' ``helpers/labels.py``: name, id, trainId) maps them to the 19 train ids that
everyone evaluates, and every other id (trainId 255 or -1) to 255, ignored.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from .errors import DataError
from .files import IGNORE_INDEX, Listing, Problem, SplitLayout, label_table, require_dir

LABELS_FILE = Path(__file__).with_name("cityscapes_labels.csv")
IMAGE_SUFFIX = "_leftImg8bit.png"
MASK_SUFFIX = "_gtFine_labelIds.png"
SPLITS = ("train", "val")  # the test split's masks are not public


def read_labels(path: Path = LABELS_FILE) -> tuple[tuple[str, ...], torch.Tensor]:
    """The train classes' names in train-id order, and the label id -> train id table (255 elsewhere)."""
    with path.open(newline="") as handle:
        rows = [(row["name"], int(row["id"]), int(row["trainId"])) for row in csv.DictReader(handle)]
    names = {train_id: name for name, _, train_id in rows if 0 <= train_id < IGNORE_INDEX}
    table = label_table(len(names))
    table[: max(label_id for _, label_id, _ in rows) + 1] = IGNORE_INDEX
    for _, label_id, train_id in rows:
        if label_id >= 0 and 0 <= train_id < IGNORE_INDEX:
            table[label_id] = train_id
    return tuple(names[index] for index in range(len(names))), table


CLASS_NAMES, LABEL_TABLE = read_labels()


def split_layout(root: str | Path, split: str) -> SplitLayout:
    """One split's images paired city by city with their label-id masks."""
    if split not in SPLITS:
        raise DataError(f"Cityscapes has no labelled split {split!r}: use 'train' or 'val'")
    root = require_dir(Path(root))
    image_dir, mask_dir = root / "leftImg8bit" / split, root / "gtFine" / split
    for folder in (image_dir, mask_dir):
        require_dir(folder)
    return SplitLayout(image_dir, mask_dir, CLASS_NAMES, LABEL_TABLE, listing=city_pairs(image_dir, mask_dir))


def city_pairs(image_dir: Path, mask_dir: Path) -> Listing:
    """Every ``<city>/<name>_leftImg8bit.png`` with its ``<city>/<name>_gtFine_labelIds.png``."""
    pairs, problems = [], []
    for image in sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}")):
        mask = mask_dir / image.parent.name / (image.name.removesuffix(IMAGE_SUFFIX) + MASK_SUFFIX)
        if mask.is_file():
            pairs.append((image, mask))
        else:
            problems.append(Problem(str(image), "missing-mask", f"no mask {mask}"))
    return Listing(tuple(pairs), tuple(problems))
