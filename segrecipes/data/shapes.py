"""Annotation shapes to index masks, shared by the exports that store shapes rather than masks (COCO,
Label Studio): the geometry (pycocotools), the overlap rule, and masks converted once and cached.

* Polygons become pixels through pycocotools, for every format alike, so a polygon covers the same
  pixels whichever tool drew it.
* Where shapes overlap the smaller area is on top (larger ones are painted first; equal areas: the
  later shape), and the pixels covered more than once are counted for ``data check``.
* The masks are PNGs under the cache folder, in a folder named by a fingerprint of the export file
  (name, size, modification time) and of the settings that change them, with a record of what was
  written, so only the first run pays.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segrecipes.cache import cache_folder, fingerprint, write_bytes_atomic, write_json

from .errors import DataError
from .files import Listing, Problem

_RECORD = "converted.json"
Record = dict[str, Any]  # class_names, items: [image file name, mask file name], notes: [kind, message]


def pycocotools_mask() -> Any:
    """pycocotools' mask module; it is an extra, so its absence is a one-line error saying how to install it."""
    try:
        from pycocotools import mask
    except ImportError:
        raise DataError('this export needs pycocotools: pip install "segrecipes[coco]"') from None
    return mask


def polygon_pixels(polygons: Sequence[Sequence[float]], height: int, width: int, where: str) -> np.ndarray:
    """The pixels (bool, H x W) inside any of ``polygons`` (flat ``x0, y0, x1, y1, ...`` in pixels);
    ``where`` names the shape in the error for a polygon of fewer than 3 points."""
    for polygon in polygons:
        if len(polygon) % 2 or len(polygon) < 6:
            raise DataError(f"{where}: a polygon with {len(polygon) / 2:g} points; polygons need at least 3 (x, y) "
                            "points")
    masks = pycocotools_mask()
    return rle_pixels(masks.merge(masks.frPyObjects([list(map(float, p)) for p in polygons], height, width)))


def rle_pixels(rle: dict[str, Any]) -> np.ndarray:
    """The pixels (bool, H x W) of a COCO RLE (compressed: ``counts`` a string or bytes)."""
    with warnings.catch_warnings():  # pycocotools' decode predates numpy 2's copy keyword: harmless, but loud
        warnings.simplefilter("ignore", DeprecationWarning)
        return pycocotools_mask().decode(rle) > 0


def leaves_image(polygons: Sequence[Sequence[float]], height: int, width: int) -> bool:
    """Whether a point of ``polygons`` lies outside the image (that part is cut off)."""
    points = np.concatenate([np.asarray(polygon, dtype=float) for polygon in polygons]).reshape(-1, 2)
    return bool((points < 0).any() or (points[:, 0] > width).any() or (points[:, 1] > height).any())


def layered(regions: Sequence[tuple[np.ndarray, int]], height: int, width: int, fill: int) -> tuple[np.ndarray, int]:
    """One image's class mask (uint8, ``fill`` where no region is) from (pixels, class) regions, the
    smaller on top, and how many pixels more than one region covers."""
    mask = np.full((height, width), fill, dtype=np.uint8)
    coverage = np.zeros((height, width), dtype=np.uint16)
    for pixels, label in sorted(regions, key=lambda region: -int(region[0].sum())):
        mask[pixels] = label
        coverage += pixels
    return mask, int((coverage > 1).sum())


def write_mask(path: Path, mask: np.ndarray) -> None:
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="PNG")
    write_bytes_atomic(path, buffer.getvalue())


def shape_notes(overlapping: int, outside: Sequence[Any], bare: int, unannotated: str) -> list[tuple[str, str]]:
    """What ``data check`` says about a conversion: overlaps, polygons cut off, images without shapes."""
    notes = []
    if overlapping:
        notes.append(("overlap", f"{overlapping} pixels are covered by more than one annotation; the smaller "
                      "annotation is on top"))
    if outside:
        notes.append(("outside-image", f"{len(outside)} polygons reach outside their image (annotations "
                      f"{', '.join(map(str, outside[:8]))}); the parts outside are cut off: check the image sizes"))
    if bare:
        state = "background" if unannotated == "background" else "ignored (data.unannotated: ignore)"
        notes.append(("no-annotation", f"{bare} images have no annotation: all their pixels are {state}"))
    return notes


def converted(
    source: Path, settings: str, convert: Callable[[Path], Record], also: Sequence[Path] = (),
) -> tuple[Path, Record]:
    """(mask folder, record): ``convert(mask_folder)`` writes the masks and returns the record, once per
    fingerprint of ``source``, the files ``also`` read and ``settings``; later calls read the record."""
    key = fingerprint(f"{settings} {source.resolve()}".encode(), [source, *also])
    mask_dir = cache_folder() / "converted" / key
    try:
        return mask_dir, json.loads((mask_dir / _RECORD).read_text())
    except (OSError, ValueError):  # not converted yet (or the record is unreadable): convert
        pass
    record = convert(mask_dir)
    write_json(mask_dir / _RECORD, record, indent=None)
    return mask_dir, record


def record_listing(
    record: Record, source: Path, image_dir: Path, mask_dir: Path,
    names: Callable[[str], Sequence[str]] = lambda name: (name,),
) -> Listing:
    """The pairs of a conversion whose images exist (under the first of ``names(file_name)`` found), a
    problem per missing image, and its notes."""
    pairs, problems = [], [Problem(str(source), kind, message, blocks_loading=False, note=True)
                           for kind, message in record["notes"]]
    for file_name, mask_name in record["items"]:
        image = next((image_dir / name for name in names(file_name) if (image_dir / name).is_file()), None)
        if image is not None:
            pairs.append((image, mask_dir / mask_name))
        else:
            problems.append(Problem(str(source), "missing-image", f"image {file_name!r} is not in {image_dir}"))
    return Listing(tuple(pairs), tuple(problems))
