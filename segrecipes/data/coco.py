"""COCO annotation JSONs (``coco:PATH``): ``instances_*.json`` or COCO-Stuff ``stuff_*.json``, one per
split, rasterized once into index masks. The rules, each tested:

* classes are the JSON's ``categories`` in file order, with its names; with ``data.coco_unannotated:
  background`` class 0 is ``background`` and the categories follow from 1, with ``ignore`` they start
  at 0 and the pixels no annotation covers are 255 (not evaluated);
* polygons, uncompressed RLE (``counts`` a list) and compressed RLE (a string) become pixels through
  pycocotools; ``iscrowd`` regions are painted with their category (a semantic mask has no instances);
* where annotations overlap the smaller area is on top (larger ones are painted first; equal areas:
  the later annotation), and the pixels covered more than once are counted for ``data check``;
* an image without annotations is all unannotated.

The masks are PNGs under the cache folder, in a folder named by a fingerprint of the JSON (name,
size, modification time) and of these settings, so only the first run pays for rasterizing.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segrecipes.cache import cache_folder, fingerprint, write_bytes_atomic, write_json

from .errors import DataError
from .files import IGNORE_INDEX, Listing, Problem, SplitLayout, label_table, require_dir
from .splits import split_listing

_VERSION = 1
_PREFIXES = ("instances_", "stuff_")
_DONE = "rasterized.json"


def split_layout(
    root: str | Path, split: str, given: Mapping[str, str | None], unannotated: str = "background",
    val_fraction: float = 0.0, split_seed: int = 0,
) -> SplitLayout:
    """``split``'s images with masks rasterized from its JSON (``given[split]``, else found under
    ``annotations/``); one JSON for the whole export is split by ``val_fraction``."""
    root = require_dir(Path(root))
    files = annotation_files(root, given)
    if files.get("train") is not None and files.get("val") is not None and files["train"] != files["val"]:
        source = files[split]
        converted = rasterize(root, source, unannotated)
        listing = converted.listing
    else:
        found = {path for path in files.values() if path is not None}
        if len(found) != 1:
            raise DataError(f"{root / 'annotations'}: no COCO JSON for the {split} split (instances_*{split}*.json or "
                            f"stuff_*{split}*.json); set data.coco_{split}_json")
        source = found.pop()
        converted = rasterize(root, source, unannotated)
        listing = split_listing(converted.listing, source, split, val_fraction, split_seed)
    table = label_table(len(converted.class_names), ignore_values=(IGNORE_INDEX,))
    return SplitLayout(converted.image_dir, converted.mask_dir, converted.class_names, table, listing=listing)


def annotation_files(root: Path, given: Mapping[str, str | None]) -> dict[str, Path | None]:
    """Split -> JSON: the path given (relative to ``root``), else the one JSON of ``annotations/`` named
    for the split, else the only JSON there (a one-split export, e.g. CVAT's ``instances_default.json``)."""
    folder = root / "annotations"
    candidates = sorted(folder.glob("*.json")) if folder.is_dir() else []
    files: dict[str, Path | None] = {}
    for split, name in given.items():
        if name is not None:
            path = root / Path(name).expanduser()
            if not path.is_file():
                raise DataError(f"data.coco_{split}_json: {path}: file not found")
            files[split] = path
            continue
        named = [path for path in candidates if path.name.startswith(_PREFIXES) and split in path.stem]
        files[split] = named[0] if len(named) == 1 else None
    if not any(files.values()) and len(candidates) == 1:
        return {split: candidates[0] for split in given}
    return files


@dataclass(frozen=True)
class Converted:
    """A JSON's classes, the folders of its images and rasterized masks, and its pairs."""

    class_names: tuple[str, ...]
    image_dir: Path
    mask_dir: Path
    listing: Listing


def rasterize(root: Path, source: Path, unannotated: str) -> Converted:
    """The masks of ``source``, written once under the cache folder (see the module docstring)."""
    key = fingerprint(f"coco v{_VERSION} {source.resolve()} {unannotated}".encode(), [source])
    mask_dir = cache_folder() / "coco" / key
    done = mask_dir / _DONE
    record = _read_record(done)
    if record is None:
        record = _convert(read_coco(source), source, mask_dir, unannotated)
        write_json(done, record, indent=None)
    image_dir = _image_folder(root, source, [item[0] for item in record["items"]])
    pairs, problems = [], [Problem(str(source), kind, message, blocks_loading=False, note=True)
                           for kind, message in record["notes"]]
    for file_name, mask_name in record["items"]:
        image = image_dir / file_name
        if image.is_file():
            pairs.append((image, mask_dir / mask_name))
        else:
            problems.append(Problem(str(source), "missing-image", f"image {file_name!r} is not in {image_dir}"))
    return Converted(tuple(record["class_names"]), image_dir, mask_dir, Listing(tuple(pairs), tuple(problems)))


def _read_record(path: Path) -> dict[str, Any] | None:
    """What an earlier run rasterized; None when there is none (or it cannot be read: rasterize again)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _image_folder(root: Path, source: Path, file_names: list[str]) -> Path:
    """Where ``file_names`` are: ``root/<tag>`` (``instances_val2017.json`` -> ``val2017``), ``root/images/<tag>``,
    ``root/images``, ``root`` or another folder in ``root``, the first that holds the first image."""
    tag = source.stem.split("_", 1)[-1]
    folders = [root / tag, root / "images" / tag, root / "images", root]
    folders += sorted(folder for folder in root.iterdir() if folder.is_dir() and folder not in folders)
    for folder in folders:
        if file_names and (folder / file_names[0]).is_file():
            return folder
    return next((folder for folder in folders if folder.is_dir()), root)


def read_coco(path: Path) -> dict[str, Any]:
    """The JSON of ``path``, refused unless it has COCO's ``images``, ``annotations`` and ``categories`` lists."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: not a COCO annotation JSON ({error})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(key), list)
                                             for key in ("images", "annotations", "categories")):
        raise DataError(f"{path}: not a COCO annotation JSON (it needs 'images', 'annotations' and 'categories' "
                        "lists)")
    for key, fields in (("categories", ("id", "name")), ("images", ("id", "file_name", "height", "width"))):
        for position, item in enumerate(data[key]):
            if not isinstance(item, dict) or any(name not in item for name in fields):
                raise DataError(f"{path}: {key}[{position}] lacks one of {', '.join(fields)}")
    return data


def _convert(data: dict[str, Any], source: Path, mask_dir: Path, unannotated: str) -> dict[str, Any]:
    """Write every image's mask; the record of what was written and the notes for ``data check``."""
    first = 1 if unannotated == "background" else 0
    categories = {category["id"]: index for index, category in enumerate(data["categories"], first)}
    names = (("background",) if first else ()) + tuple(str(category["name"]) for category in data["categories"])
    if len(names) >= IGNORE_INDEX:
        raise DataError(f"{source}: {len(names)} classes; at most {IGNORE_INDEX - 1} fit an 8-bit mask")
    images = {image["id"]: image for image in data["images"]}
    by_image: dict[Any, list[dict[str, Any]]] = {image_id: [] for image_id in images}
    for annotation in data["annotations"]:
        where = f"annotation {annotation.get('id')}"
        if annotation.get("category_id") not in categories:
            raise DataError(f"{source}: {where} uses category_id {annotation.get('category_id')}, which 'categories' "
                            "does not declare")
        if annotation.get("image_id") not in images:
            raise DataError(f"{source}: {where} is on image_id {annotation.get('image_id')}, which 'images' lacks")
        by_image[annotation["image_id"]].append(annotation)
    items, notes, outside, overlapping, bare = [], [], [], 0, 0
    for image_id, image in images.items():
        height, width = int(image["height"]), int(image["width"])
        fill = 0 if first else IGNORE_INDEX
        mask, overlap, out = paint(by_image[image_id], categories, height, width, fill, source)
        buffer = io.BytesIO()
        Image.fromarray(mask).save(buffer, format="PNG")
        write_bytes_atomic(mask_dir / f"{image_id}.png", buffer.getvalue())
        items.append((image["file_name"], f"{image_id}.png"))
        overlapping += overlap
        outside += out
        bare += not by_image[image_id]
    used = {annotation["category_id"] for annotation in data["annotations"]}
    unused = [str(category["name"]) for category in data["categories"] if category["id"] not in used]
    if unused:
        notes.append(("unused-category", f"categories with no annotation: {', '.join(unused)} (they stay classes, "
                      "never learned; drop them from 'categories' to leave them out)"))
    if overlapping:
        notes.append(("overlap", f"{overlapping} pixels are covered by more than one annotation; the smaller "
                      "annotation is on top"))
    if outside:
        notes.append(("outside-image", f"{len(outside)} polygons reach outside their image (annotations "
                      f"{', '.join(map(str, outside[:8]))}); the parts outside are cut off: check the image sizes"))
    if bare:
        notes.append(("no-annotation", f"{bare} images have no annotation: all their pixels are "
                      f"{'background' if first else 'ignored'}"))
    return {"class_names": names, "items": items, "notes": notes}


def paint(
    annotations: list[dict[str, Any]], categories: Mapping[Any, int], height: int, width: int, fill: int, source: Path,
) -> tuple[np.ndarray, int, list[Any]]:
    """One image's class mask (uint8), its pixels under more than one annotation, and the ids of the
    annotations with a polygon outside the image. Larger areas first, so smaller ones end on top."""
    regions = [(region(annotation, height, width, source), annotation) for annotation in annotations]
    mask = np.full((height, width), fill, dtype=np.uint8)
    coverage = np.zeros((height, width), dtype=np.uint16)
    for pixels, annotation in sorted(regions, key=lambda pair: -int(pair[0].sum())):
        mask[pixels] = categories[annotation["category_id"]]
        coverage += pixels
    outside = [annotation.get("id") for annotation in annotations if _leaves_image(annotation, height, width)]
    return mask, int((coverage > 1).sum()), outside


def region(annotation: dict[str, Any], height: int, width: int, source: Path) -> np.ndarray:
    """The pixels (bool, H x W) of one annotation's polygons or RLE."""
    masks = _pycocotools_mask()
    segmentation = annotation.get("segmentation")
    where = f"{source}: annotation {annotation.get('id')} (image {annotation.get('image_id')})"
    if isinstance(segmentation, list) and segmentation:
        for polygon in segmentation:
            if not isinstance(polygon, list) or len(polygon) % 2 or len(polygon) < 6:
                count = len(polygon) / 2 if isinstance(polygon, list) else 0
                raise DataError(f"{where}: a polygon with {count:g} points; polygons need at least 3 (x, y) points")
        rle = masks.merge(masks.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        if list(segmentation["size"]) != [height, width]:
            raise DataError(f"{where}: RLE size {segmentation['size']} is not the image's [height, width] "
                            f"[{height}, {width}]")
        compressed = not isinstance(segmentation["counts"], list)
        rle = segmentation if compressed else masks.frPyObjects(segmentation, height, width)
    else:
        raise DataError(f"{where}: 'segmentation' is neither polygons nor RLE")
    return masks.decode(rle).astype(bool)


def _leaves_image(annotation: dict[str, Any], height: int, width: int) -> bool:
    segmentation = annotation.get("segmentation")
    if not isinstance(segmentation, list):
        return False
    points = np.concatenate([np.asarray(polygon, dtype=float) for polygon in segmentation]).reshape(-1, 2)
    return bool((points < 0).any() or (points[:, 0] > width).any() or (points[:, 1] > height).any())


def _pycocotools_mask() -> Any:
    """pycocotools' mask module; it is an extra, so its absence is a one-line error saying how to install it."""
    try:
        from pycocotools import mask
    except ImportError:
        raise DataError('coco:PATH needs pycocotools: pip install "segrecipes[coco]"') from None
    return mask
