"""COCO annotation JSONs (``coco:PATH``): ``instances_*.json`` or COCO-Stuff ``stuff_*.json``, one per
split, rasterized once into index masks. The rules, each tested:

* classes are the JSON's ``categories`` in file order, with its names; with ``data.unannotated:
  background`` class 0 is ``background`` and the categories follow from 1, with ``ignore`` they start
  at 0 and the pixels no annotation covers are 255 (not evaluated);
* polygons, uncompressed RLE (``counts`` a list) and compressed RLE (a string) become pixels through
  pycocotools; ``iscrowd`` regions are painted with their category (a semantic mask has no instances);
* overlaps: the smaller area on top, the overlapping pixels counted (:mod:`segrecipes.data.shapes`);
* an image without annotations is all unannotated.

The masks are converted once and cached (:func:`segrecipes.data.shapes.converted`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError
from .files import IGNORE_INDEX, Listing, SplitLayout, label_table, require_dir
from .shapes import converted, layered, leaves_image, polygon_pixels, pycocotools_mask, record_listing, rle_pixels, \
    shape_notes, write_mask
from .splits import split_listing

_VERSION = 1
_PREFIXES = ("instances_", "stuff_")


def split_layout(
    root: str | Path, split: str, given: Mapping[str, str | None], unannotated: str = "background",
    val_fraction: float = 0.0, split_seed: int = 0,
) -> SplitLayout:
    """``split``'s images with masks rasterized from its JSON (``given[split]``, else found under
    ``annotations/``); one JSON for the whole export is split by ``val_fraction``."""
    root = require_dir(Path(root))
    files = annotation_files(root, given)
    both = files.get("train") is not None and files.get("val") is not None and files["train"] != files["val"]
    found = {path for path in files.values() if path is not None}
    if not both and len(found) != 1:
        raise DataError(f"{root / 'annotations'}: no COCO JSON for the {split} split (instances_*{split}*.json or "
                        f"stuff_*{split}*.json); set data.coco_{split}_json")
    source = files[split] if both else found.pop()
    masks = rasterize(root, source, unannotated)
    listing = masks.listing if both else split_listing(masks.listing, source, split, val_fraction, split_seed)
    table = label_table(len(masks.class_names), ignore_values=(IGNORE_INDEX,))
    return SplitLayout(masks.image_dir, masks.mask_dir, masks.class_names, table, listing=listing)


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
        if len(named) > 1:
            raise DataError(f"{folder}: {', '.join(path.name for path in named)} all fit the {split} split; choose "
                            f"one with data.coco_{split}_json")
        files[split] = named[0] if named else None
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
    """The masks of ``source``, written once under the cache folder (:func:`~segrecipes.data.shapes.converted`)."""
    mask_dir, record = converted(source, f"coco v{_VERSION} {unannotated}",
                                 lambda folder: _convert(read_coco(source), source, folder, unannotated))
    image_dir = _image_folder(root, source, [item[0] for item in record["items"]])
    return Converted(tuple(record["class_names"]), image_dir, mask_dir,
                     record_listing(record, source, image_dir, mask_dir))


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
    required = {"categories": ("id", "name"), "images": ("id", "file_name", "height", "width"),
                "annotations": ("id", "image_id", "category_id", "segmentation")}
    for key, fields in required.items():
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
    items, outside, overlapping, bare = [], [], 0, 0
    fill = 0 if first else IGNORE_INDEX
    for image_id, image in images.items():
        height, width = int(image["height"]), int(image["width"])
        anns = by_image[image_id]
        regions = [(region(annotation, height, width, source), categories[annotation["category_id"]])
                   for annotation in anns]
        mask, overlap = layered(regions, height, width, fill)
        write_mask(mask_dir / f"{image_id}.png", mask)
        items.append((image["file_name"], f"{image_id}.png"))
        overlapping += overlap
        outside += [annotation.get("id") for annotation in anns if isinstance(annotation["segmentation"], list)
                    and leaves_image(annotation["segmentation"], height, width)]
        bare += not anns
    used = {annotation["category_id"] for annotation in data["annotations"]}
    unused = [str(category["name"]) for category in data["categories"] if category["id"] not in used]
    notes = shape_notes(overlapping, outside, bare, unannotated)
    if unused:
        notes.append(("unused-category", f"categories with no annotation: {', '.join(unused)} (they stay classes, "
                      "never learned; drop them from 'categories' to leave them out)"))
    return {"class_names": names, "items": items, "notes": notes}


def region(annotation: dict[str, Any], height: int, width: int, source: Path) -> np.ndarray:
    """The pixels (bool, H x W) of one annotation's polygons or RLE."""
    segmentation = annotation.get("segmentation")
    where = f"{source}: annotation {annotation.get('id')} (image {annotation.get('image_id')})"
    if isinstance(segmentation, list) and segmentation and all(isinstance(polygon, list) for polygon in segmentation):
        return polygon_pixels(segmentation, height, width, where)
    if not (isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation):
        raise DataError(f"{where}: 'segmentation' is neither polygons nor RLE")
    if list(segmentation["size"]) != [height, width]:
        raise DataError(f"{where}: RLE size {segmentation['size']} is not the image's [height, width] "
                        f"[{height}, {width}]")
    if isinstance(segmentation["counts"], list):  # uncompressed: run lengths, to pycocotools' compressed form
        segmentation = pycocotools_mask().frPyObjects(segmentation, height, width)
    return rle_pixels(segmentation)
