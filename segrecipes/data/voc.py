"""Pascal VOC 2012 segmentation (``voc:PATH``), and the split-list layout it shares with CVAT's
"Segmentation mask" export: ``ImageSets/Segmentation/<split>.txt`` lists the items, images are in
``JPEGImages/``, masks in ``SegmentationClass/<item>.png``.

The split file decides what is in a split (not the folders): an item listed without its image or
mask is an error naming the list, its line and the item.
"""

from __future__ import annotations

from pathlib import Path

from .errors import DataError
from .files import IMAGE_SUFFIXES, Listing, Problem, SplitLayout, label_table, require_dir
from .splits import split_listing

CLASS_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
BORDER = 255  # the outlines around objects in VOC masks: not evaluated
LISTS = Path("ImageSets") / "Segmentation"
IMAGES = "JPEGImages"
MASKS = "SegmentationClass"


def split_layout(root: str | Path, split: str, val_fraction: float = 0.0, split_seed: int = 0) -> SplitLayout:
    """Palette PNGs whose stored indices are the 21 classes, 255 (the border) ignored."""
    base = export_folder(Path(root), ("VOC2012", "VOCdevkit/VOC2012"))
    table = label_table(len(CLASS_NAMES), ignore_values=(BORDER,))
    listing = split_list_listing(base, split, val_fraction, split_seed)
    return SplitLayout(base / IMAGES, base / MASKS, CLASS_NAMES, table, listing=listing)


def export_folder(root: Path, inside: tuple[str, ...] = ()) -> Path:
    """The folder holding ``ImageSets/Segmentation``: ``root`` or one of the subfolders ``inside`` it."""
    require_dir(root)
    for candidate in (root, *(root / name for name in inside)):
        if (candidate / LISTS).is_dir():
            return candidate
    raise DataError(f"{root}: no {LISTS.as_posix()} folder (expected the split lists of a VOC-style export there)")


def split_list_listing(base: Path, split: str, val_fraction: float, split_seed: int) -> Listing:
    """The pairs listed in ``<split>.txt``; an export with a single list (CVAT's ``default.txt``) is
    split by ``val_fraction`` (:mod:`segrecipes.data.splits`)."""
    lists = base / LISTS
    path = lists / f"{split}.txt"
    if path.is_file():
        return listed_pairs(path, base)
    found = sorted(lists.glob("*.txt"))
    if len(found) == 1:
        return split_listing(listed_pairs(found[0], base), found[0], split, val_fraction, split_seed)
    names = ", ".join(file.name for file in found) or "none"
    raise DataError(f"{lists}: no {split}.txt (split lists found: {names})")


def listed_pairs(list_file: Path, base: Path) -> Listing:
    """(image, mask) for each item (one per line) of ``list_file``, and a problem per item that lacks either."""
    pairs, problems = [], []
    for number, line in enumerate(list_file.read_text().splitlines(), 1):
        item = line.strip()
        if not item:
            continue
        image = next((base / IMAGES / f"{item}{suffix}" for suffix in IMAGE_SUFFIXES
                      if (base / IMAGES / f"{item}{suffix}").is_file()), None)
        mask = base / MASKS / f"{item}.png"
        if image is None:
            problems.append(Problem(str(list_file), "missing-image", f"line {number}: {item!r} is listed but there is "
                                    f"no image {item}.* in {base / IMAGES}"))
        elif not mask.is_file():
            problems.append(Problem(str(list_file), "missing-mask", f"line {number}: {item!r} is listed but there is "
                                    f"no mask {mask}"))
        else:
            pairs.append((image, mask))
    return Listing(tuple(pairs), tuple(problems))
