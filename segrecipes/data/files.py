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

from .arrays import ARRAY_SUFFIXES, is_array_file, read_array_image, read_array_mask
from .errors import DataError
from .normalize import ChannelStats
from .palette import Palette, colour_codes, colour_of

IGNORE_INDEX = 255
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", *ARRAY_SUFFIXES)
# JPEG masks are paired so that the checks can say what is wrong with them (lossy: labels change at edges)
MASK_SUFFIXES = (".png", ".jpg", ".jpeg", *ARRAY_SUFFIXES)
# ImageReadMode per channel count for 8-bit image files
_READ_MODES = {1: ImageReadMode.GRAY, 3: ImageReadMode.RGB, 4: ImageReadMode.RGB_ALPHA}
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
    raw mask value to a class index, to 255 (ignored) or to -1 (not allowed; see :func:`label_table`).

    With a ``palette`` masks are RGB colours, class k drawn in colour k. ``channels``: image channels.
    ``stats``: per-channel normalization applied where images are read (None: uint8 RGB, normalized
    with ImageNet's statistics on the device). ``listing``: the pairs, for exports that list them."""

    image_dir: Path
    mask_dir: Path
    class_names: tuple[str, ...]
    table: torch.Tensor = field(repr=False)
    palette: Palette | None = None
    channels: int = 3
    stats: ChannelStats | None = None
    listing: Listing | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class Listing:
    """The pairs of a split that an export lists (a split file, an annotation JSON) rather than
    :func:`pair_files` finding them by stem, with the problems met while listing them. ``assignment``:
    the file recording which images ``data.val_fraction`` put in which split, for a one-split export."""

    pairs: tuple[tuple[Path, Path], ...]
    problems: tuple[Problem, ...] = ()
    assignment: Path | None = None


@dataclass(frozen=True)
class Problem:
    """A file or folder that is not as a dataset needs it. ``blocks_loading``: the dataset cannot be
    built (an image without its mask, two files of one stem); the others only matter to a check.
    ``note``: a remark for the check (what a conversion found), not an error."""

    path: str
    kind: str
    message: str
    blocks_loading: bool = True
    note: bool = False

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


def find_pairs(layout: SplitLayout) -> tuple[list[tuple[Path, Path]], list[Problem]]:
    """The (image, mask) pairs of ``layout`` and the problems met: its listing, else paired by stem."""
    if layout.listing is None:
        return pair_files(layout.image_dir, layout.mask_dir)
    return list(layout.listing.pairs), list(layout.listing.problems)


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


def read_image(path: Path, channels: int = 3) -> torch.Tensor:
    """(channels, H, W) as stored: uint8 for image files (grey, palette and RGBA converted to RGB for
    3 channels), uint8 or float32 for arrays (:mod:`segrecipes.data.arrays`)."""
    if is_array_file(path):
        return read_array_image(path, channels)
    if channels not in _READ_MODES:
        raise DataError(f"{path}: image files have 1, 3 or 4 channels, data.in_channels is {channels}: store "
                        "the images as .npy or .tif")
    return decode(path, _READ_MODES[channels])


def read_raw_mask(path: Path) -> torch.Tensor:
    """The stored values (H, W) of a single-channel 8- or 16-bit mask (uint8, uint16, or int32 for arrays)."""
    if is_array_file(path):
        return read_array_mask(path)
    raw = decode(path, ImageReadMode.UNCHANGED)
    if raw.shape[0] != 1:
        raise DataError(f"{path}: mask has {raw.shape[0]} channels; expected a single-channel PNG of class indices "
                        "(for colour masks set data.palette)")
    return raw[0]


def read_mask_values(path: Path, layout: SplitLayout) -> torch.Tensor:
    """What ``layout`` looks classes up from: the stored values, or colour codes with a palette."""
    if layout.palette is None:
        return read_raw_mask(path)
    return colour_codes(decode(path, ImageReadMode.RGB))


def labels_of(raw: torch.Tensor, layout: SplitLayout) -> torch.Tensor:
    """Class index (int16) per pixel of ``raw`` (from :func:`read_mask_values`); -1 where not allowed."""
    if layout.palette is not None:
        return layout.palette.classes(raw)
    return look_up(raw, layout.table)


def look_up(raw: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``table[raw]`` with 4-byte indices: a gather, not a copy of the mask to int64 first."""
    return table.index_select(0, raw.flatten().int()).view(raw.shape)


def bad_label_values(raw: torch.Tensor, layout: SplitLayout) -> list[int]:
    """Up to 8 distinct raw values (or colour codes) of ``raw`` that map to no class and not to ignore."""
    return raw[labels_of(raw, layout) < 0].int().unique()[:_SHOWN_VALUES].tolist()


def bad_label_message(values: list[int], layout: SplitLayout) -> str:
    if layout.palette is not None:
        colours = ", ".join(str(colour_of(value)) for value in values)
        return f"colours {colours} are not in {layout.palette.source} (add them, or repaint those pixels)"
    return (f"mask values {values} are neither classes 0..{layout.num_classes - 1} nor ignored "
            "(check data.num_classes, data.ignore_value, data.reduce_zero_label and data.label_map)")


class SegmentationFiles(Dataset):
    """``ds[i] -> (image, mask)``: uint8 RGB (3, H, W) at the original size (float32 (C, H, W),
    normalized, when ``layout.stats`` is set) and uint8 (H, W) class indices with 255 = ignore, decoded
    from the file pairs of ``layout``."""

    ignore_index = IGNORE_INDEX

    def __init__(self, layout: SplitLayout) -> None:
        self.layout = layout
        self.image_dir = layout.image_dir
        self.class_names = list(layout.class_names)
        self.pairs, problems = find_pairs(layout)
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

    def read_stored(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The image as stored (channels, H, W) and its uint8 (H, W) class indices, before normalization."""
        image_path, mask_path = self.pairs[index]
        layout = self.layout
        image = read_image(image_path, layout.channels)
        raw = read_mask_values(mask_path, layout)
        if raw.shape != image.shape[1:]:
            raise DataError(f"{mask_path}: mask is {raw.shape[1]}x{raw.shape[0]} but its image {image_path.name} is "
                            f"{image.shape[2]}x{image.shape[1]}")
        labels = labels_of(raw, layout)
        if labels.amin() < 0:
            raise DataError(f"{mask_path}: {bad_label_message(bad_label_values(raw, layout), layout)}")
        return image, labels.to(torch.uint8)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 RGB and class indices; float32 images normalized by ``layout.stats`` when it is set."""
        image, labels = self.read_stored(index)
        if self.layout.stats is not None:
            return self.layout.stats(image), labels
        if image.dtype != torch.uint8:
            raise DataError(f"{self.pairs[index][0]}: {image.dtype} pixels need data.mean and data.std (or auto)")
        return image, labels
