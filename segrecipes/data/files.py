"""Datasets stored as image/mask file pairs: layout, pairing, decoding and raw-label mapping, once.

ADE20k, CamVid and a user's folder differ only in their :class:`SplitLayout` (where the files are and
how raw mask values map to classes). The dataset and ``segrecipes data check`` both pair, decode and
map labels with the functions here; the dataset stops at the first problem, the check lists them all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image

from .errors import DataError

IGNORE_INDEX = 255
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
MASK_SUFFIXES = (".png",)
# Masks are 8- or 16-bit PNGs: a table over every 16-bit value maps any raw value in one gather.
_RAW_VALUES = 1 << 16
_SHOWN_VALUES = 8
_CPP_LOCATION = re.compile(r"^.*\.cpp:\d+,\s*")  # torchvision prefixes its messages with a source location


def require_dir(path: Path) -> Path:
    if not path.is_dir():
        raise DataError(f"{path}: folder not found")
    return path


@dataclass(frozen=True, eq=False)
class SplitLayout:
    """One split of a file dataset: its image and mask folders, its classes, and ``table`` mapping every
    raw mask value to a class index, to 255 (ignored) or to -1 (not allowed; see :func:`label_table`)."""

    image_dir: Path
    mask_dir: Path
    class_names: tuple[str, ...]
    table: torch.Tensor = field(repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class Problem:
    """A file or folder that is not as a dataset needs it. ``blocks_loading``: the dataset cannot be
    built (an image without its mask, two files of one stem); the others only matter to a check."""

    path: str
    kind: str
    message: str
    blocks_loading: bool = True

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def pair_files(image_dir: Path, mask_dir: Path) -> tuple[list[tuple[Path, Path]], list[Problem]]:
    """(image, mask) paths paired by file stem, sorted, and every problem met on the way.

    A missing or empty image folder is an empty split; masks without an image are reported but harmless.
    """
    problems: list[Problem] = []
    images = _files_by_stem(image_dir, IMAGE_SUFFIXES, problems)
    if not images:
        problems.append(Problem(str(image_dir), "empty-split", "no images in this split", blocks_loading=False))
        return [], problems
    if not mask_dir.is_dir():
        message = f"mask folder not found (needed for the {len(images)} images in {image_dir})"
        problems.append(Problem(str(mask_dir), "missing-mask", message))
        return [], problems
    masks = _files_by_stem(mask_dir, MASK_SUFFIXES, problems)
    for stem in sorted(images.keys() - masks.keys()):
        problems.append(Problem(str(images[stem]), "missing-mask", f"no mask {stem}.png in {mask_dir}"))
    for stem in sorted(masks.keys() - images.keys()):
        problems.append(Problem(str(masks[stem]), "missing-image", f"no image named {stem}.* in {image_dir}",
                                blocks_loading=False))
    return [(images[stem], masks[stem]) for stem in sorted(images.keys() & masks.keys())], problems


def _files_by_stem(folder: Path, suffixes: Sequence[str], problems: list[Problem]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    if not folder.is_dir():
        return files
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in suffixes:
            continue
        if path.stem in files:
            problems.append(Problem(str(path), "duplicate-name", f"same name as {files[path.stem].name}; keep one "
                                    "file per stem"))
            continue
        files[path.stem] = path
    return files


def label_table(num_classes: int, ignore_values: Iterable[int] = (), shift: int = 0) -> torch.Tensor:
    """Raw mask value -> class index: ``raw - shift`` when in [0, num_classes), 255 for an ignored
    raw value, and -1 for anything else (reported as an error when a mask contains it). int16: the
    whole table stays in cache while a mask is looked up."""
    if not 0 < num_classes <= IGNORE_INDEX:
        raise DataError(f"num_classes {num_classes} must be between 1 and {IGNORE_INDEX} ({IGNORE_INDEX} means ignore)")
    table = torch.arange(_RAW_VALUES) - shift
    table[(table < 0) | (table >= num_classes)] = -1
    for value in ignore_values:
        table[value] = IGNORE_INDEX
    return table.to(torch.int16)


def decode(path: Path, mode: ImageReadMode) -> torch.Tensor:
    """The pixels of ``path`` as torchvision decodes them; a file it cannot decode is a DataError naming it."""
    try:
        return decode_image(str(path), mode=mode)
    except RuntimeError as error:
        reason = _CPP_LOCATION.sub("", str(error).strip().splitlines()[0])
        raise DataError(f"{path}: cannot decode ({reason})") from None


def read_image(path: Path) -> torch.Tensor:
    """uint8 RGB (3, H, W); grey, palette and RGBA images are converted."""
    return decode(path, ImageReadMode.RGB)


def read_raw_mask(path: Path) -> torch.Tensor:
    """The stored values (H, W) of a single-channel 8- or 16-bit mask, as stored (uint8 or uint16)."""
    raw = decode(path, ImageReadMode.UNCHANGED)
    if raw.shape[0] != 1:
        raise DataError(f"{path}: mask has {raw.shape[0]} channels; expected a single-channel PNG of class indices")
    return raw[0]


def look_up(raw: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``table[raw]`` with 4-byte indices: a gather, not a copy of the mask to int64 first."""
    return table.index_select(0, raw.flatten().int()).view(raw.shape)


def bad_label_values(raw: torch.Tensor, table: torch.Tensor) -> list[int]:
    """Up to 8 distinct raw values of ``raw`` that ``table`` maps to no class and not to ignore."""
    return raw[look_up(raw, table) < 0].int().unique()[:_SHOWN_VALUES].tolist()


def bad_label_message(values: list[int], num_classes: int) -> str:
    return (f"mask values {values} are neither classes 0..{num_classes - 1} nor ignored "
            "(check data.num_classes, data.ignore_value and data.reduce_zero_label)")


class SegmentationFiles(Dataset):
    """``ds[i] -> (image, mask)``: uint8 RGB (3, H, W) at the original size and uint8 (H, W) class
    indices with 255 = ignore, decoded from the file pairs of ``layout``."""

    ignore_index = IGNORE_INDEX

    def __init__(self, layout: SplitLayout) -> None:
        self.layout = layout
        self.image_dir = layout.image_dir
        self.class_names = list(layout.class_names)
        self.pairs, problems = pair_files(layout.image_dir, layout.mask_dir)
        blocking = [problem for problem in problems if problem.blocks_loading]
        if blocking:
            more = f" ({len(blocking) - 1} more such problems)" if len(blocking) > 1 else ""
            raise DataError(f"{blocking[0]}{more}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.pairs)

    def image_path(self, index: int) -> str:
        return str(self.pairs[index][0])

    def mask_path(self, index: int) -> str:
        return str(self.pairs[index][1])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, mask_path = self.pairs[index]
        image = read_image(image_path)
        raw = read_raw_mask(mask_path)
        if raw.shape != image.shape[1:]:
            raise DataError(f"{mask_path}: mask is {raw.shape[1]}x{raw.shape[0]} but its image {image_path.name} is "
                            f"{image.shape[2]}x{image.shape[1]}")
        labels = look_up(raw, self.layout.table)
        if labels.amin() < 0:
            bad = bad_label_values(raw, self.layout.table)
            raise DataError(f"{mask_path}: {bad_label_message(bad, self.num_classes)}")
        return image, labels.to(torch.uint8)
