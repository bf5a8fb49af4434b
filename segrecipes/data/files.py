"""Datasets stored as image/mask file pairs: pairing, decoding and raw-label mapping in one place.

ADE20k, CamVid and a user's folder differ only in where the files are and in how raw mask values
map to class indices; everything else (pairing by stem, decoding, checks) lives here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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


def require_dir(path: Path) -> Path:
    if not path.is_dir():
        raise DataError(f"{path}: folder not found")
    return path


def find_pairs(image_dir: Path, mask_dir: Path) -> list[tuple[Path, Path]]:
    """(image, mask) paths paired by file stem, sorted; a missing image folder means an empty split."""
    if not image_dir.is_dir():
        return []
    images = _files_by_stem(image_dir, IMAGE_SUFFIXES)
    if not images:
        return []
    if not mask_dir.is_dir():
        raise DataError(f"{mask_dir}: mask folder not found (needed for the {len(images)} images in {image_dir})")
    masks = _files_by_stem(mask_dir, MASK_SUFFIXES)
    unpaired = sorted(images.keys() - masks.keys())
    if unpaired:
        raise DataError(
            f"{images[unpaired[0]]}: no mask {unpaired[0]}.png in {mask_dir} ({len(unpaired)} images have no mask)"
        )
    return [(images[stem], masks[stem]) for stem in sorted(images)]


def _files_by_stem(folder: Path, suffixes: Sequence[str]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in suffixes:
            continue
        if path.stem in files:
            raise DataError(f"{path}: same name as {files[path.stem].name}; keep one file per stem")
        files[path.stem] = path
    return files


def label_table(num_classes: int, ignore_values: Iterable[int] = (), shift: int = 0) -> torch.Tensor:
    """Raw mask value -> class index: ``raw - shift`` when in [0, num_classes), 255 for an ignored
    raw value, and -1 for anything else (reported as an error when a mask contains it)."""
    if not 0 < num_classes <= IGNORE_INDEX:
        raise DataError(f"num_classes {num_classes} must be between 1 and {IGNORE_INDEX} ({IGNORE_INDEX} means ignore)")
    table = torch.arange(_RAW_VALUES) - shift
    table[(table < 0) | (table >= num_classes)] = -1
    for value in ignore_values:
        table[value] = IGNORE_INDEX
    return table


class SegmentationFiles(Dataset):
    """``ds[i] -> (image, mask)``: uint8 RGB (3, H, W) at the original size and int64 (H, W) class
    indices with 255 = ignore, decoded from the file pairs of ``image_dir`` / ``mask_dir``."""

    ignore_index = IGNORE_INDEX

    def __init__(self, image_dir: Path, mask_dir: Path, class_names: Sequence[str], table: torch.Tensor) -> None:
        self.image_dir = image_dir
        self.pairs = find_pairs(image_dir, mask_dir)
        self.class_names = list(class_names)
        self.table = table

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
        image = _decode(image_path, ImageReadMode.RGB)
        raw = _decode(mask_path, ImageReadMode.UNCHANGED)
        if raw.shape[0] != 1:
            raise DataError(
                f"{mask_path}: mask has {raw.shape[0]} channels; expected a single-channel PNG of class indices"
            )
        if raw.shape[1:] != image.shape[1:]:
            raise DataError(
                f"{mask_path}: mask is {raw.shape[2]}x{raw.shape[1]} but its image {image_path.name} is "
                f"{image.shape[2]}x{image.shape[1]}"
            )
        raw = raw[0].long()
        mask = self.table[raw]
        invalid = mask < 0
        if invalid.any():
            values = raw[invalid].unique()[:8].tolist()
            raise DataError(
                f"{mask_path}: mask values {values} are neither classes 0..{self.num_classes - 1} nor ignored "
                "(check data.num_classes, data.ignore_value and data.reduce_zero_label)"
            )
        return image, mask


def _decode(path: Path, mode: ImageReadMode) -> torch.Tensor:
    try:
        return decode_image(str(path), mode=mode)
    except RuntimeError as error:
        raise DataError(f"{path}: cannot decode ({str(error).splitlines()[0]})") from None
