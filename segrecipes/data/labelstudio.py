"""Label Studio's JSON export (``labelstudio:PATH``): ``PATH`` is the exported JSON, or a folder holding
it (the only ``*.json``) with the images in ``images/`` or beside it. The rules, each tested:

* of each task, the first annotation not cancelled is read (``predictions`` are not);
* ``brushlabels`` results hold Label Studio's RLE of the brush layer (RGBA, bit-packed runs:
  :func:`decode_brush`), and a pixel is labelled where its alpha is at least 128; ``polygonlabels``
  results hold points in percent of ``original_width`` and ``original_height``. Any other result type
  is refused, with its task and result id;
* overlaps, caching and notes follow :mod:`segrecipes.data.shapes` (the smaller area on top);
* classes: the names in ``classes.txt`` beside the JSON, in its order, else the label names the
  results use, sorted; with ``data.unannotated: background`` class 0 is ``background`` first;
* an image is the file name of the task's ``data.image`` (an upload's ``1a2b3c4d-`` prefix dropped
  when only the original name is there); the export is one split (see ``data.val_fraction``).

The "Brush labels to PNG" export is read when its files (``task-T-annotation-A-by-USER-TAG-LABEL-I.png``,
the brush layer's alpha as a grayscale image) lie anywhere below the JSON's folder. Those names hold no
image, so the JSON (the full export or JSON-MIN) then serves only as the task list, task id -> image,
and its results are not read. Of each task the PNGs of its lowest annotation id are read; a pixel is
labelled where the PNG is at least 128; the label is the name's ``LABEL`` part: the longest name of
``classes.txt`` it ends with, else all after the tag name's first ``-``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .errors import DataError
from .files import IGNORE_INDEX, SplitLayout, label_table, require_dir
from .folder import CLASSES_FILE, read_class_names
from .shapes import Record, converted, layered, leaves_image, polygon_pixels, record_listing, shape_notes, write_mask
from .splits import split_listing

_VERSION = 1
READ_TYPES = ("brushlabels", "polygonlabels")
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")
_OPAQUE = 128
PNG_EXPORT = re.compile(r"^task-(\d+)-annotation-(\d+)-by-[A-Za-z0-9@.]*-(.+)-\d+\.png$")


def split_layout(
    root: str | Path, split: str, unannotated: str = "background", val_fraction: float = 0.0, split_seed: int = 0
) -> SplitLayout:
    """Masks painted from the export's results, cached; the images of the one split cut by ``val_fraction``."""
    source = export_file(Path(root))
    folder = source.parent
    fixed = tuple(read_class_names(folder, None)) if (folder / CLASSES_FILE).is_file() else None
    image_dir = folder / "images" if (folder / "images").is_dir() else folder
    settings = f"labelstudio v{_VERSION} {unannotated} {fixed}"
    pngs = sorted(path for path in folder.rglob("task-*.png") if PNG_EXPORT.match(path.name))
    if pngs:
        mask_dir, record = converted(source, settings, lambda masks: _convert_pngs(
            read_tasks(source, images_only=True), pngs, source, image_dir, masks, unannotated, fixed), pngs)
    else:
        mask_dir, record = converted(source, settings, lambda masks: _convert(
            read_tasks(source), source, image_dir, masks, unannotated, fixed))
    listing = record_listing(record, source, image_dir, mask_dir, _image_names)
    class_names = tuple(record["class_names"])
    table = label_table(len(class_names), ignore_values=(IGNORE_INDEX,))
    return SplitLayout(image_dir, mask_dir, class_names, table,
                       listing=split_listing(listing, source, split, val_fraction, split_seed))


def export_file(path: Path) -> Path:
    """``path`` when it is a file, else the only JSON in the folder ``path``."""
    if path.is_file():
        return path
    found = sorted(require_dir(path).glob("*.json"))
    if len(found) != 1:
        names = ", ".join(file.name for file in found) or "none"
        raise DataError(f"{path}: expected one Label Studio JSON export here (found: {names}); give the file as "
                        "labelstudio:FILE")
    return found[0]


def read_tasks(path: Path, images_only: bool = False) -> list[dict[str, Any]]:
    """The task list of an export; anything else (a COCO JSON, a single task) is refused. With
    ``images_only`` a JSON-MIN export (``image`` beside ``id``, no ``data``) is taken too."""
    try:
        tasks = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: not a Label Studio JSON export ({error})") from None
    if not isinstance(tasks, list) or not all(isinstance(task, dict) and isinstance(task.get("data"), dict)
                                              or images_only and isinstance(task, dict) and "image" in task
                                              for task in tasks):
        raise DataError(f"{path}: not a Label Studio JSON export (expected a list of tasks, each with 'data'"
                        f"{' or, as JSON-MIN writes it, with image' if images_only else ''})")
    return tasks


def _task_image(task: dict[str, Any]) -> str:
    """The file name of a task's image (``data.image``, or JSON-MIN's ``image``)."""
    return Path(str(task["data"].get("image", "") if "data" in task else task["image"])).name


def _image_names(name: str) -> tuple[str, ...]:
    """The file name of an image, and without the prefix Label Studio gives uploads."""
    return (name, _UPLOAD_PREFIX.sub("", name)) if _UPLOAD_PREFIX.match(name) else (name,)


def _convert(
    tasks: list[dict[str, Any]], source: Path, image_dir: Path, mask_dir: Path, unannotated: str,
    fixed: tuple[str, ...] | None,
) -> Record:
    """Write every task's mask from its results; the record of what was written and the notes."""
    shapes = [_shapes(task, source) for task in tasks]
    names = fixed or tuple(sorted({label for results in shapes for _, label in results}))
    painted, outside = [], []
    for position, (task, results) in enumerate(zip(tasks, shapes)):
        task_id, file_name = task.get("id", position), _task_image(task)
        where = f"{source}: task {task_id}"
        sizes = {(int(result["original_height"]), int(result["original_width"])) for result, _ in results
                 if "original_height" in result and "original_width" in result}
        if len(sizes) > 1 or results and not sizes:
            raise DataError(f"{where}: {'differing' if sizes else 'no'} original_width/original_height in its "
                            "results (the image size is needed to paint them)")
        size = sizes.pop() if sizes else _image_size(image_dir, file_name)
        regions = []
        for result, label in results:
            named = f"{where}, result {result.get('id')!r}"
            regions.append((_pixels(result, *size, named), label, named))
            points = result["value"].get("points")
            if points and leaves_image([_pixel_points(points, *size)], *size):
                outside.append(result.get("id"))
        painted.append((task_id, file_name, size, regions))
    return _paint(painted, names, mask_dir, unannotated, outside, source.parent / CLASSES_FILE)


def _convert_pngs(
    tasks: list[dict[str, Any]], pngs: list[Path], source: Path, image_dir: Path, mask_dir: Path,
    unannotated: str, fixed: tuple[str, ...] | None,
) -> Record:
    """Write every task's mask from the PNGs of its lowest annotation id; the JSON names the images."""
    images = {str(task.get("id", position)): _task_image(task) for position, task in enumerate(tasks)}
    layers: dict[str, dict[int, list[tuple[Path, str]]]] = {}
    for path in pngs:
        task_id, annotation, middle = PNG_EXPORT.match(path.name).groups()  # type: ignore[union-attr]
        if task_id not in images:
            raise DataError(f"{path}: task {task_id} is not in {source} (export the JSON of the same project)")
        layers.setdefault(task_id, {}).setdefault(int(annotation), []).append((path, _png_label(middle, fixed)))
    chosen = {task_id: annotations[min(annotations)] for task_id, annotations in layers.items()}
    names = fixed or tuple(sorted({label for files in chosen.values() for _, label in files}))
    painted = []
    for task_id, file_name in images.items():
        regions = [(_png_pixels(path), label, str(path)) for path, label in chosen.get(task_id, [])]
        sizes = {pixels.shape for pixels, _, _ in regions}
        if len(sizes) > 1:
            raise DataError(f"{source}: task {task_id}: its PNGs differ in size ({', '.join(map(str, sizes))})")
        size = sizes.pop() if sizes else _image_size(image_dir, file_name)
        painted.append((task_id, file_name, size, regions))
    record = _paint(painted, names, mask_dir, unannotated, [], source.parent / CLASSES_FILE)
    read = sum(len(files) for files in chosen.values())
    record["notes"].append(("brush-png", f"the masks are {read} PNGs of the \"Brush labels to PNG\" export "
                            f"({len(pngs) - read} of later annotations not read); the JSON gives only the images"))
    return record


def _png_label(middle: str, fixed: tuple[str, ...] | None) -> str:
    """The label of a PNG's ``TAG-LABEL``: the longest name of ``classes.txt`` it ends with, else all
    after the first ``-`` (Label Studio joins the tag name and the label with one)."""
    known = [name for name in fixed or () if middle.endswith(f"-{name}")]
    return max(known, key=len) if known else middle.partition("-")[2]


def _png_pixels(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("L")) >= _OPAQUE
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable PNG ({error})") from None


def _paint(
    painted: list[tuple[Any, str, tuple[int, int] | None, list[tuple[np.ndarray, str, str]]]],
    names: tuple[str, ...], mask_dir: Path, unannotated: str, outside: list[Any], classes_file: Path,
) -> Record:
    """Write the masks of (task id, image, size or None when the image is missing, [(pixels, label,
    where)]); the record of what was written and the notes for ``data check``."""
    first = 1 if unannotated == "background" else 0
    index = {name: position for position, name in enumerate(names, first)}
    items, overlapping, bare = [], 0, 0
    for task_id, file_name, size, regions in painted:
        items.append((file_name, f"{task_id}.png"))
        if size is None:  # an image neither annotated nor found: listed as missing
            continue
        for _, label, where in regions:
            if label not in index:
                raise DataError(f"{where}: label {label!r} is not in {classes_file}")
        mask, overlap = layered([(pixels, index[label]) for pixels, label, _ in regions], *size,
                                0 if first else IGNORE_INDEX)
        write_mask(mask_dir / f"{task_id}.png", mask)
        overlapping += overlap
        bare += not regions
    return {"class_names": (("background",) if first else ()) + names, "items": items,
            "notes": shape_notes(overlapping, outside, bare, unannotated)}


def _shapes(task: dict[str, Any], source: Path) -> list[tuple[dict[str, Any], str]]:
    """(result, label) for the results of the task's first annotation not cancelled; other types refused."""
    annotation = next((item for item in task.get("annotations", []) if not item.get("was_cancelled")), None)
    shapes = []
    for result in annotation.get("result", []) if annotation else []:
        where = f"{source}: task {task.get('id')}, result {result.get('id')!r}"
        kind = result.get("type")
        if kind not in READ_TYPES:
            raise DataError(f"{where}: type {kind!r} is not read (labelstudio:PATH reads {' and '.join(READ_TYPES)}; "
                            "remove those results or export masks)")
        labels = result.get("value", {}).get(kind, [])
        if len(labels) != 1:
            raise DataError(f"{where}: {len(labels)} labels; one label per region")
        shapes.append((result, labels[0]))
    return shapes


def _pixels(result: dict[str, Any], height: int, width: int, where: str) -> np.ndarray:
    value = result["value"]
    if result["type"] == "brushlabels":
        return decode_brush(value.get("rle", []), height, width, where)
    return polygon_pixels([_pixel_points(value.get("points", []), height, width)], height, width, where)


def _image_size(image_dir: Path, file_name: str) -> tuple[int, int] | None:
    """(height, width) of an image with nothing painted on it, or None when it is missing."""
    image = next((image_dir / name for name in _image_names(file_name) if (image_dir / name).is_file()), None)
    if image is None:
        return None
    with Image.open(image) as opened:
        return opened.height, opened.width


def _pixel_points(points: list[list[float]], height: int, width: int) -> list[float]:
    """Label Studio's ``[[x%, y%], ...]`` as flat pixel coordinates."""
    return [coordinate for x, y in points for coordinate in (x * width / 100, y * height / 100)]


def decode_brush(rle: list[int], height: int, width: int, where: str) -> np.ndarray:
    """The pixels (bool, H x W) of a brush result: Label Studio packs the RGBA layer as a bit stream
    (most significant bit first): the value count (32 bits), the word size - 1 (5 bits), four run-length
    field sizes - 1 (4 bits each), then chunks of a repeat flag (1 bit), a field-size choice (2 bits) and
    the chunk length - 1 in that field, followed by one word repeated, or that many words."""
    bits = "".join(f"{byte:08b}" for byte in bytes(rle))
    position = 0

    def read(count: int) -> int:
        nonlocal position
        if position + count > len(bits):
            raise DataError(f"{where}: the brush RLE ends early (a corrupt export?)")
        position += count
        return int(bits[position - count:position], 2)

    total, word = read(32), read(5) + 1
    if total != height * width * 4:
        raise DataError(f"{where}: the brush RLE holds {total} values, not 4 per pixel of a {width}x{height} image")
    fields = [read(4) + 1 for _ in range(4)]
    values = np.zeros(total, dtype=np.uint32)
    done = 0
    while done < total:
        repeated = read(1)
        end = min(total, done + 1 + read(fields[read(2)]))
        if repeated:
            values[done:end] = read(word)
        else:
            values[done:end] = [read(word) for _ in range(end - done)]
        done = end
    return values.reshape(height, width, 4)[:, :, 3] >= _OPAQUE
