"""Find every problem in a dataset before a long run trips over the first one, each with its file.

Three levels, from the same per-pair checks:

* :func:`cheap_checks` lists the folders and reads file headers only (pairs, empty splits, sizes,
  mask formats, EXIF orientation, colour modes);
* :func:`training_checks`, what a run does before its first step: the headers, plus every mask
  decoded once for values that are neither a class nor ignored. The result is cached under a
  fingerprint of the files (names, sizes, modification times) and of the label mapping, so the next
  run on unchanged data starts at once;
* :func:`check_dataset` (``segrecipes data check``) also decodes every image, which finds truncated or
  corrupt files.

Pairing, decoding and label mapping are the datasets' own functions (:mod:`segrecipes.data.files`).
"""

from __future__ import annotations

import json
import os
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image
from torchvision.io import ImageReadMode

from segrecipes.cache import cache_folder, fingerprint, write_json
from segrecipes.disk import write_failure

from .settings import DataSettings
from .errors import DataError
from .arrays import array_shape, image_size, is_array_file
from .files import (
    IGNORE_INDEX,
    Problem,
    SplitLayout,
    bad_label_message,
    bad_label_values,
    decode,
    find_pairs,
    read_image,
    read_mask_values,
)
from .palette import colour_codes, colour_of
from .spec import SPLITS, split_layout

_CACHE_VERSION = 2
_SHOWN_COLOURS = 8
_NO_PALETTE = "RGB colour mask without a palette: set data.palette to a file with one 'R G B name' line per class"

Severity = Literal["error", "note"]
EXIF_ORIENTATION = 0x0112
# Pillow's names for 16-bit single-channel PNGs ("I" in older releases).
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I"})
# Single-channel masks whose stored values the loader reads as they are (palette PNGs: the indices).
INDEX_MASK_MODES = frozenset({"L", "P"}) | SIXTEEN_BIT_MODES
_MASK_MODE_PROBLEMS = {
    "1": "1-bit PNG: the loader reads 1 as 255 (ignore); save it as an 8-bit grayscale PNG",
}
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
    spec_or_cfg: str | DataSettings, splits: Sequence[str] = SPLITS, workers: int | None = None
) -> Report:
    """Pairs, empty splits, mask formats, sizes, EXIF and colour modes from file headers only."""
    return _check(_data_config(spec_or_cfg), splits, _Level(), workers)


def training_checks(
    spec_or_cfg: str | DataSettings, splits: Sequence[str] = SPLITS, workers: int | None = None,
    cache_dir: Path | None = None,
) -> Report:
    """:func:`cheap_checks` plus the values of every mask, cached per split under ``cache_dir``
    (default: :func:`cache_folder`) by a fingerprint of the files and the label mapping."""
    level = _Level(masks=True)
    return _check(_data_config(spec_or_cfg), splits, level, workers, cache_dir or cache_folder())


def check_dataset(
    spec_or_cfg: str | DataSettings, splits: Sequence[str] = SPLITS, workers: int | None = None
) -> Report:
    """Everything :func:`training_checks` does (never from the cache), plus one decode of every image:
    corrupt or truncated files."""
    return _check(_data_config(spec_or_cfg), splits, _Level(masks=True, images=True), workers)


def _data_config(spec_or_cfg: str | DataSettings) -> DataSettings:
    return DataSettings(spec=spec_or_cfg) if isinstance(spec_or_cfg, str) else spec_or_cfg


@dataclass(frozen=True)
class _Level:
    """What is decoded besides the headers."""

    masks: bool = False
    images: bool = False


@dataclass(frozen=True)
class _Pair:
    split: str
    index: int
    image: Path
    mask: Path


def _check(
    cfg: DataSettings, splits: Sequence[str], level: _Level, workers: int | None, cache_dir: Path | None = None
) -> Report:
    unknown = [split for split in splits if split not in SPLITS]
    if unknown or not splits:
        raise DataError(f"splits {list(splits)}: use a non-empty subset of {list(SPLITS)}")
    report = Report(cfg.spec, decoded=level.masks)
    for split in splits:
        layout = split_layout(cfg, split)
        if layout is None:  # synthetic data has no files
            return report
        found, problems = find_pairs(layout)
        report.pairs[split] = len(found)
        pairs = [_Pair(split, index, image, mask) for index, (image, mask) in enumerate(found)]
        cache = cache_dir / "data-checks" / f"{_fingerprint(layout, pairs, level)}.json" if cache_dir else None
        issues = _read_cache(cache)
        if issues is None:
            issues = [_issue(problem, split) for problem in problems]
            normalized = layout.stats is not None or "auto" in (cfg.mean, cfg.std)
            pair_issues, values = _check_pairs(pairs, layout, level, normalized, workers)
            issues += pair_issues + _label_convention_issues(layout, split, values)
            _write_cache(cache, issues)
        report.issues += issues
    return report


def _issue(problem: Problem, split: str) -> Issue:
    return Issue(problem.path, problem.kind, problem.message, "note" if problem.note else "error", split=split)


def _check_pairs(
    pairs: list[_Pair], layout: SplitLayout, level: _Level, normalized: bool, workers: int | None
) -> tuple[list[Issue], set[int]]:
    """Every pair's issues, and the stored mask values met in the split (index masks, when decoded)."""
    checker = _PairChecker(layout, level, normalized)
    with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
        results = list(pool.map(checker, pairs))
    return [issue for issues, _ in results for issue in issues], {value for _, values in results for value in values}


def _label_convention_issues(layout: SplitLayout, split: str, values: set[int]) -> list[Issue]:
    """The label conventions a split's stored values betray: binary 0/255 masks read with 255 as
    ignore, and ``reduce_zero_label`` needed or wrongly set. Each says the setting that fixes it."""
    if not values or layout.palette is not None or layout.listing is not None:  # exports state their own labels
        return []
    folder = str(layout.mask_dir)
    table, classes = layout.table, layout.num_classes
    ignored = {value for value in values if int(table[value]) == IGNORE_INDEX}
    labelled = values - ignored
    shifted = int(table[0]) == IGNORE_INDEX and classes > 1 and int(table[1]) == 0
    if values <= {0, 255} and 255 in ignored and 0 in labelled:
        return [Issue(folder, "binary-0-255", "masks hold only 0 and 255, and 255 is read as ignore, so the "
                      "foreground is never learned; set data.label_map: {0: 0, 255: 1} and data.num_classes: 2",
                      split=split)]
    if not shifted and classes in values and int(table[classes]) < 0 and max(labelled) == classes:
        return [Issue(folder, "reduce-zero-label", f"values run {min(labelled)}..{classes} for {classes} classes: "
                      "if 0 means unlabelled, set data.reduce_zero_label: true", split=split)]
    if shifted and labelled and max(labelled) == classes - 1 and classes not in values:
        return [Issue(folder, "reduce-zero-label", f"data.reduce_zero_label is set but the values run "
                      f"0..{classes - 1}: 0 looks like a class (it is ignored now, and the last class never occurs); set "
                      "data.reduce_zero_label: false", split=split)]
    return []


def files_fingerprint(layout: SplitLayout, purpose: str) -> str:
    """The key of another cache of what a split's files hold (``purpose`` keeps it apart from the checks')."""
    found, _ = find_pairs(layout)
    return _fingerprint(layout, [_Pair("", index, image, mask) for index, (image, mask) in enumerate(found)], purpose)


def _fingerprint(layout: SplitLayout, pairs: list[_Pair], level: _Level | str) -> str:
    """Changes whenever a file is added, removed, rewritten or renamed, or the label mapping changes."""
    header = f"v{_CACHE_VERSION} {level} {layout.image_dir} {layout.mask_dir}".encode() + layout.table.numpy().tobytes()
    return fingerprint(header, [path for pair in pairs for path in (pair.image, pair.mask)])


def _read_cache(path: Path | None) -> list[Issue] | None:
    if path is None or not path.is_file():
        return None
    try:
        return [Issue(**item) for item in json.loads(path.read_text())["issues"]]
    except (OSError, ValueError, KeyError, TypeError):  # unreadable or from another version: check again
        return None


def _write_cache(path: Path | None, issues: list[Issue]) -> None:
    """Atomically; a cache folder that cannot be written costs the next run a re-check, nothing more."""
    if path is None:
        return
    try:
        write_json(path, {"issues": [asdict(issue) for issue in issues]}, indent=None)
    except OSError as error:
        warnings.warn(f"{write_failure('the data check cache', path, error)}; the next run checks again", stacklevel=3)


@dataclass(frozen=True)
class _Header:
    format: str | None
    mode: str
    size: tuple[int, int]
    orientation: int


def _read_header(path: Path, channels: int) -> _Header:
    """Format, mode, (width, height) and EXIF orientation, without decoding the pixels; for arrays
    the mode is their channel count (``4ch``)."""
    if is_array_file(path):
        count, height, width = image_size(array_shape(path), channels)
        return _Header(path.suffix.lstrip(".").upper(), f"{count}ch", (width, height), 1)
    with Image.open(path) as image:
        return _Header(image.format, image.mode, image.size, int(image.getexif().get(EXIF_ORIENTATION, 1)))


class _PairChecker:
    """All checks of one image/mask pair; called from worker threads, so it only reads."""

    def __init__(self, layout: SplitLayout, level: _Level, normalized: bool) -> None:
        self.layout = layout
        self.level = level
        self.normalized = normalized  # data.mean/std given, or auto (counted when training starts)

    def __call__(self, pair: _Pair) -> tuple[list[Issue], set[int]]:
        issues: list[Issue] = []
        values: set[int] = set()

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
        if self.level.images and image is not None:
            channels = self.layout.channels
            pixels = _decoded(lambda path: read_image(path, channels), pair.image, add)
            if (pixels is not None and pixels.dtype != torch.uint8 and not self.normalized
                    and image.mode not in SIXTEEN_BIT_MODES):
                add(pair.image, "16-bit-image", f"{pixels.dtype} pixels: give data.mean and data.std "
                    "(or auto) to normalize them")
        if self.level.masks and index_mask:
            raw = _decoded(lambda path: read_mask_values(path, self.layout), pair.mask, add)
            bad = bad_label_values(raw, self.layout) if raw is not None else []
            if bad:
                add(pair.mask, "bad-label", bad_label_message(bad, self.layout))
            if raw is not None and self.layout.palette is None:
                values.update(raw.unique().tolist())
        elif self.level.masks and mask is not None and mask.mode in ("RGB", "RGBA") and self.layout.palette is None:
            rgb = _decoded(lambda path: decode(path, ImageReadMode.RGB), pair.mask, add)
            if rgb is not None:
                colours = [colour_of(code) for code in colour_codes(rgb).unique()[:_SHOWN_COLOURS].tolist()]
                add(pair.mask, "not-index-mask", f"{_NO_PALETTE} (colours here: {', '.join(map(str, colours))})")
        return issues, values

    def _header(self, path: Path, add: _Add) -> _Header | None:
        try:
            return _read_header(path, self.layout.channels)
        except (OSError, SyntaxError, ValueError, DataError) as error:  # "not an image I can read", in every form
            add(path, "unreadable", f"cannot read ({str(error).removeprefix(f'{path}: ')})")
            return None

    def _image_header(self, path: Path, header: _Header, add: _Add) -> None:
        channels = self.layout.channels
        if is_array_file(path):
            if header.mode != f"{channels}ch":
                add(path, "channels", f"{header.mode.removesuffix('ch')} channels but data.in_channels is {channels}")
            return
        if channels != 3:
            if header.mode in SIXTEEN_BIT_MODES or (channels, header.mode) not in ((1, "L"), (4, "RGBA")):
                add(path, "channels", f"{header.mode} image but data.in_channels is {channels}: store such images as "
                    ".npy or .tif")
        elif header.mode in SIXTEEN_BIT_MODES:
            add(path, "16-bit-image", "16-bit image; the loader expects 8 bits per channel")
        elif header.mode != "RGB":
            add(path, "converted", f"{header.mode} image, converted to RGB on load", "note")
        if header.orientation != 1:
            add(path, "exif-rotated", f"EXIF orientation {header.orientation}: the loader uses the pixels as "
                "stored, not as viewers show them; save the image upright without the tag")

    def _mask_header(self, path: Path, header: _Header, add: _Add) -> bool:
        """Report a mask that is not a single-channel index PNG (or, with a palette, a colour PNG); True
        when its values can be checked."""
        if is_array_file(path):
            if header.mode != "1ch":
                add(path, "not-index-mask", f"a {header.mode.removesuffix('ch')}-channel array; masks hold one "
                    "class index per pixel")
            return header.mode == "1ch"
        if header.format == "JPEG":
            add(path, "jpeg-mask", "mask saved as JPEG: its lossy compression changes label values at edges; "
                "export the masks again as PNG from the annotation tool (converting this file keeps the damage)")
            return False
        if header.format != "PNG":
            add(path, "not-index-mask", f"a {header.format} file, not a PNG; masks must be lossless PNGs of indices")
            return False
        if self.layout.palette is not None:
            if header.mode not in ("RGB", "RGBA", "P"):
                add(path, "not-index-mask", f"{header.mode} image: with data.palette masks are colour (RGB) PNGs")
                return False
            return True
        if header.mode in SIXTEEN_BIT_MODES:
            add(path, "16-bit-mask", "16-bit mask, read as raw class indices", "note")
        elif header.mode not in INDEX_MASK_MODES:
            default = f"{header.mode} image, not a single-channel mask of class indices (convert colours to indices)"
            if header.mode in ("RGB", "RGBA"):  # decoded masks get this message with their colours
                if not self.level.masks:
                    add(path, "not-index-mask", f"{_NO_PALETTE} (decode the masks to list their colours)")
                return False
            add(path, "not-index-mask", _MASK_MODE_PROBLEMS.get(header.mode, default))
            return False
        return True


def _decoded(read: Callable[[Path], torch.Tensor], path: Path, add: _Add) -> torch.Tensor | None:
    """``read(path)``, or None after recording why the file cannot be decoded."""
    try:
        return read(path)
    except DataError as error:
        add(path, "corrupt", str(error).removeprefix(f"{path}: "))
        return None
