"""Find every problem in a dataset before a long run trips over the first one, each with its file.

Two levels. :func:`cheap_checks` lists the folders and reads file headers only (pairs, empty
splits, sizes, mask formats, EXIF orientation, colour modes): cheap enough for the trainer to run
up front. :func:`check_dataset` also decodes every file once, with the decoder the loader uses, which
finds truncated or corrupt files and mask values that are neither a class nor ignored.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_image

from ..config import DataConfig
from . import ade20k, camvid, folder
from .errors import DataError
from .files import IMAGE_SUFFIXES, MASK_SUFFIXES, label_table, require_dir
from .spec import SPLITS, parse_data_spec

Severity = Literal["error", "note"]
EXIF_ORIENTATION = 0x0112
# Pillow's names for 16-bit single-channel PNGs ("I" in older releases).
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I"})
# Single-channel masks whose stored values the loader reads as they are (palette PNGs: the indices).
INDEX_MASK_MODES = frozenset({"L", "P"}) | SIXTEEN_BIT_MODES
_MASK_MODE_PROBLEMS = {
    "1": "1-bit PNG: the loader reads 1 as 255 (ignore); save it as an 8-bit grayscale PNG",
}
_CPP_LOCATION = re.compile(r"^.*\.cpp:\d+,\s*")
# add(path, kind, message, severity="error"): how the per-pair checks record an issue
_Add = Callable[..., None]


@dataclass(frozen=True)
class Issue:
    """One problem (``severity="error"``) or remark (``"note"``) about one file or folder.

    ``split`` and ``index`` locate the pair in the dataset (``index`` is the position in the
    dataset's sorted pairs, None for a problem that is not about one pair)."""

    path: str
    kind: str
    message: str
    severity: Severity = "error"
    split: str | None = None
    index: int | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class Report:
    """Every issue found in a dataset, and how many image/mask pairs each split has."""

    spec: str
    decoded: bool
    pairs: dict[str, int] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)

    @property
    def errors(self) -> list[Issue]:
        return [issue for issue in self.issues if issue.severity == "error"]

    @property
    def notes(self) -> list[Issue]:
        return [issue for issue in self.issues if issue.severity == "note"]

    @property
    def ok(self) -> bool:
        """No errors (notes are allowed)."""
        return not self.errors

    def bad_indices(self, split: str) -> list[int]:
        """Positions of the pairs of ``split`` with an error: what a ``--skip-bad`` run leaves out.

        They index the dataset's pairs (sorted by stem) whenever the dataset can be built, i.e. no
        image lacks its mask."""
        return sorted({issue.index for issue in self.errors if issue.split == split and issue.index is not None})

    def counts(self) -> dict[str, int]:
        """Issue kind -> how many times it was found."""
        return dict(Counter(issue.kind for issue in self.issues))

    def summary(self) -> str:
        checked = ", ".join(f"{count} {split}" for split, count in self.pairs.items()) or "no"
        level = "decoded" if self.decoded else "headers read"
        return f"{checked} pairs checked ({level}): {len(self.errors)} errors, {len(self.notes)} notes"

    def raise_if_errors(self) -> None:
        """Raise a one-line :class:`DataError` naming the first problem file when there is an error."""
        errors = self.errors
        if errors:
            more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
            raise DataError(f"{errors[0]}{more}; run `segrecipes data check {self.spec}` for the full list")

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "decoded": self.decoded, "ok": self.ok, "pairs": self.pairs,
                "counts": self.counts(), "issues": [asdict(issue) for issue in self.issues]}


def cheap_checks(
    spec_or_cfg: str | DataConfig, splits: Sequence[str] = SPLITS, workers: int | None = None
) -> Report:
    """Pairs, empty splits, mask formats, sizes, EXIF and colour modes from file headers only."""
    return _check(_data_config(spec_or_cfg), splits, decode=False, workers=workers)


def check_dataset(
    spec_or_cfg: str | DataConfig, splits: Sequence[str] = SPLITS, workers: int | None = None
) -> Report:
    """Everything :func:`cheap_checks` does, plus one decode of every file: corrupt or truncated
    files and label values outside the classes and the ignore value."""
    return _check(_data_config(spec_or_cfg), splits, decode=True, workers=workers)


def _data_config(spec_or_cfg: str | DataConfig) -> DataConfig:
    return DataConfig(spec=spec_or_cfg) if isinstance(spec_or_cfg, str) else spec_or_cfg


@dataclass(frozen=True)
class _Layout:
    """Where each split's files are and how raw mask values map to classes (see the dataset classes)."""

    folders: dict[str, tuple[Path, Path]]
    table: torch.Tensor
    num_classes: int


def _layout(cfg: DataConfig, splits: Sequence[str]) -> _Layout | None:
    """The folders and label table the ADE20k, CamVid and folder datasets use; rebuilt here because
    their constructors stop at the first unpaired file, where a check must go on and list them all."""
    kind, root = parse_data_spec(cfg.spec)
    if root is None:  # synthetic data has no files
        return None
    root = require_dir(root)
    if kind == "ade20k":
        base = ade20k._dataset_folder(root)
        names = ade20k._SPLIT_FOLDERS
        folders = {s: (base / "images" / names[s], base / "annotations" / names[s]) for s in splits}
        return _Layout(folders, label_table(len(ade20k.CLASS_NAMES), (0,), shift=1), len(ade20k.CLASS_NAMES))
    if kind == "camvid":
        folders = {s: (root / s, root / f"{s}annot") for s in splits}
        table = label_table(len(camvid.CLASS_NAMES), (camvid.VOID_LABEL,))
        return _Layout(folders, table, len(camvid.CLASS_NAMES))
    names = folder._class_names(root, cfg.num_classes)
    ignored = (cfg.ignore_value, 0) if cfg.reduce_zero_label else (cfg.ignore_value,)
    folders = {s: (root / "images" / s, root / "masks" / s) for s in splits}
    return _Layout(folders, label_table(len(names), ignored, shift=int(cfg.reduce_zero_label)), len(names))


@dataclass(frozen=True)
class _Pair:
    split: str
    index: int
    image: Path
    mask: Path


def _check(cfg: DataConfig, splits: Sequence[str], decode: bool, workers: int | None) -> Report:
    unknown = [split for split in splits if split not in SPLITS]
    if unknown or not splits:
        raise DataError(f"splits {list(splits)}: use a non-empty subset of {list(SPLITS)}")
    report = Report(cfg.spec, decoded=decode)
    layout = _layout(cfg, splits)
    if layout is None:
        return report
    pairs: list[_Pair] = []
    for split, (image_dir, mask_dir) in layout.folders.items():
        found = _pair_files(split, image_dir, mask_dir, report.issues)
        report.pairs[split] = len(found)
        pairs += [_Pair(split, index, image, mask) for index, (image, mask) in enumerate(found)]
    checker = _PairChecker(layout.table, layout.num_classes, decode)
    with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
        for issues in pool.map(checker, pairs):
            report.issues += issues
    return report


def _pair_files(split: str, image_dir: Path, mask_dir: Path, issues: list[Issue]) -> list[tuple[Path, Path]]:
    """Pairs by stem in the order the dataset uses; records empty splits and unpaired files."""
    images = _files_by_stem(image_dir, IMAGE_SUFFIXES, split, issues)
    if not images:
        issues.append(Issue(str(image_dir), "empty-split", f"no images in split {split!r}", split=split))
        return []
    if not mask_dir.is_dir():
        message = f"mask folder not found (needed for the {len(images)} images in {image_dir})"
        issues.append(Issue(str(mask_dir), "missing-mask", message, split=split))
        return []
    masks = _files_by_stem(mask_dir, MASK_SUFFIXES, split, issues)
    for stem in sorted(images.keys() - masks.keys()):
        issues.append(Issue(str(images[stem]), "missing-mask", f"no mask {stem}.png in {mask_dir}", split=split))
    for stem in sorted(masks.keys() - images.keys()):
        issues.append(Issue(str(masks[stem]), "missing-image", f"no image named {stem}.* in {image_dir}", split=split))
    return [(images[stem], masks[stem]) for stem in sorted(images.keys() & masks.keys())]


def _files_by_stem(folder_path: Path, suffixes: Sequence[str], split: str, issues: list[Issue]) -> dict[str, Path]:
    if not folder_path.is_dir():
        return {}
    files: dict[str, Path] = {}
    for path in sorted(folder_path.iterdir()):
        if path.suffix.lower() not in suffixes:
            continue
        if path.stem in files:
            message = f"same name as {files[path.stem].name}; keep one file per stem"
            issues.append(Issue(str(path), "duplicate-name", message, split=split))
            continue
        files[path.stem] = path
    return files


@dataclass(frozen=True)
class _Header:
    format: str | None
    mode: str
    size: tuple[int, int]
    orientation: int


def _read_header(path: Path) -> _Header:
    """Format, mode, (width, height) and EXIF orientation, without decoding the pixels."""
    with Image.open(path) as image:
        return _Header(image.format, image.mode, image.size, int(image.getexif().get(EXIF_ORIENTATION, 1)))


class _PairChecker:
    """All checks of one image/mask pair; called from worker threads, so it only reads."""

    def __init__(self, table: torch.Tensor, num_classes: int, decode: bool) -> None:
        self.table = table
        self.num_classes = num_classes
        self.decode = decode

    def __call__(self, pair: _Pair) -> list[Issue]:
        issues: list[Issue] = []

        def add(path: Path, kind: str, message: str, severity: Severity = "error") -> None:
            issues.append(Issue(str(path), kind, message, severity, pair.split, pair.index))

        image = self._header(pair.image, add)
        mask = self._header(pair.mask, add)
        if image is not None:
            self._image_header(pair.image, image, add)
        index_mask = mask is not None and self._mask_header(pair.mask, mask, add)
        if image is not None and mask is not None and image.size != mask.size:
            add(pair.mask, "size-mismatch", f"mask is {mask.size[0]}x{mask.size[1]} but its image "
                f"{pair.image.name} is {image.size[0]}x{image.size[1]}")
        if self.decode and image is not None:
            pixels = _decode(pair.image, ImageReadMode.RGB, add)
            if pixels is not None and pixels.dtype != torch.uint8 and image.mode not in SIXTEEN_BIT_MODES:
                add(pair.image, "16-bit-image", "16-bit image; the loader expects 8 bits per channel")
        if self.decode and index_mask:
            raw = _decode(pair.mask, ImageReadMode.UNCHANGED, add)
            if raw is not None:
                self._mask_values(pair.mask, raw, add)
        return issues

    @staticmethod
    def _header(path: Path, add: _Add) -> _Header | None:
        try:
            return _read_header(path)
        except (OSError, SyntaxError, ValueError) as error:  # Pillow's ways of saying "not an image I can read"
            add(path, "unreadable", f"cannot read ({error})")
            return None

    @staticmethod
    def _image_header(path: Path, header: _Header, add: _Add) -> None:
        if header.mode in SIXTEEN_BIT_MODES:
            add(path, "16-bit-image", "16-bit image; the loader expects 8 bits per channel")
        elif header.mode != "RGB":
            add(path, "converted", f"{header.mode} image, converted to RGB on load", "note")
        if header.orientation != 1:
            add(path, "exif-rotated", f"EXIF orientation {header.orientation}: the loader uses the pixels as "
                "stored, not as viewers show them; save the image upright without the tag")

    @staticmethod
    def _mask_header(path: Path, header: _Header, add: _Add) -> bool:
        """Report a mask that is not a single-channel index PNG; True when its values can be checked."""
        if header.format != "PNG":
            add(path, "not-index-mask", f"a {header.format} file, not a PNG; masks must be lossless PNGs of indices")
            return False
        if header.mode in SIXTEEN_BIT_MODES:
            add(path, "16-bit-mask", "16-bit mask, read as raw class indices", "note")
        elif header.mode not in INDEX_MASK_MODES:
            default = f"{header.mode} image, not a single-channel mask of class indices (convert colours to indices)"
            add(path, "not-index-mask", _MASK_MODE_PROBLEMS.get(header.mode, default))
            return False
        return True

    def _mask_values(self, path: Path, raw: torch.Tensor, add: _Add) -> None:
        values = raw[0].long()
        invalid = self.table[values] < 0
        if invalid.any():
            shown = values[invalid].unique()[:8].tolist()
            add(path, "bad-label", f"mask values {shown} are neither classes 0..{self.num_classes - 1} nor ignored "
                "(check data.num_classes, data.ignore_value and data.reduce_zero_label)")


def _decode(path: Path, mode: ImageReadMode, add: _Add) -> torch.Tensor | None:
    try:
        return decode_image(str(path), mode=mode)
    except RuntimeError as error:
        reason = _CPP_LOCATION.sub("", str(error).strip().splitlines()[0])
        add(path, "corrupt", f"cannot decode ({reason})")
        return None
