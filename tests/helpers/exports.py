"""Labelling-tool exports written the way each tool writes them, with tiny hand-drawn masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from helpers.bad_data import write_image, write_mask, write_palette_mask

# Pascal VOC: palette PNGs whose indices are the classes, 255 the border around objects
VOC_MASK = np.array([[0, 0, 15, 15], [0, 255, 15, 15], [12, 12, 255, 0], [12, 12, 0, 0]], dtype=np.uint8)

# CVAT: labelmap.txt as the "Segmentation mask 1.1" export writes it, and masks painted in those colours
CVAT_LABELMAP = "# label:color_rgb:parts:actions\nbackground:0,0,0::\ncat:250,50,83::\ndog:36,179,83::\n"
CVAT_COLOURS = np.array([(0, 0, 0), (250, 50, 83), (36, 179, 83)], dtype=np.uint8)
CVAT_CLASSES = np.array([[0, 1, 1, 0], [0, 1, 1, 0], [2, 2, 0, 0], [2, 2, 0, 1]], dtype=np.uint8)

# Cityscapes: label ids in the gtFine masks and the train ids they mean (road 7->0, sidewalk 8->1,
# building 11->2, person 24->11, car 26->13, bicycle 33->18; unlabeled 0, parking 9, ego vehicle 1 -> 255)
CITYSCAPES_IDS = np.array([[7, 7, 8, 0], [11, 24, 26, 9], [33, 1, 7, 7], [26, 26, 24, 8]], dtype=np.uint8)
CITYSCAPES_TRAIN_IDS = np.array([[0, 0, 1, 255], [2, 11, 13, 255], [18, 255, 0, 0], [13, 13, 11, 1]], dtype=np.uint8)


def write_voc(root: Path, splits: dict[str, list[str]]) -> Path:
    """``VOCdevkit/VOC2012`` with a JPEG and a palette mask (:data:`VOC_MASK`, rolled by position) per item."""
    base = root / "VOCdevkit" / "VOC2012"
    for split, items in splits.items():
        _write_list(base, split, items)
        for position, item in enumerate(items):
            write_image(base / "JPEGImages" / f"{item}.jpg", 4, 4)
            write_palette_mask(base / "SegmentationClass" / f"{item}.png", np.roll(VOC_MASK, position, axis=1))
    return root


def write_cvat(root: Path, items: list[str], split: str = "default") -> Path:
    """A CVAT "Segmentation mask 1.1" export with images: labelmap.txt, one split list, colour masks."""
    (root / "SegmentationObject").mkdir(parents=True, exist_ok=True)
    (root / "labelmap.txt").write_text(CVAT_LABELMAP)
    _write_list(root, split, items)
    for position, item in enumerate(items):
        write_image(root / "JPEGImages" / f"{item}.jpg", 4, 4)
        write_colour_mask(root / "SegmentationClass" / f"{item}.png", np.roll(CVAT_CLASSES, position, axis=0))
    return root


def write_colour_mask(path: Path, classes: np.ndarray, colours: np.ndarray = CVAT_COLOURS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(colours[classes]).save(path)
    return path


def write_cityscapes(root: Path, frames: dict[str, list[str]]) -> Path:
    """``leftImg8bit/`` and ``gtFine/`` with ``<city>_<seq>_<frame>`` names (split -> frames), the label-id
    mask (:data:`CITYSCAPES_IDS`) and the colour mask the official scripts also write beside it."""
    for split, names in frames.items():
        for name in names:
            city = name.split("_")[0]
            write_image(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", 4, 4)
            gt = root / "gtFine" / split / city
            write_mask(gt / f"{name}_gtFine_labelIds.png", CITYSCAPES_IDS)
            write_image(gt / f"{name}_gtFine_color.png", 4, 4, mode="RGBA")
    return root


def _write_list(base: Path, split: str, items: list[str]) -> None:
    lists = base / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / f"{split}.txt").write_text("".join(f"{item}\n" for item in items))


# COCO: categories declared out of id order, so class indices follow the file, not the ids
COCO_CATEGORIES = [{"id": 7, "name": "person"}, {"id": 3, "name": "car"}, {"id": 12, "name": "sky"}]
# with data.unannotated=background: 0 background, 1 person, 2 car, 3 sky
COCO_FIRST = np.array([  # sky polygon rows 0-3; car RLE rows 2-4 x cols 2-4 on top (smaller); person crowd RLE
    [3, 3, 3, 3, 3, 3, 3, 3],
    [3, 3, 3, 3, 3, 3, 3, 3],
    [3, 3, 2, 2, 2, 3, 3, 3],
    [3, 3, 2, 2, 2, 3, 3, 3],
    [0, 0, 2, 2, 2, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0],
    [1, 1, 0, 0, 0, 0, 0, 0],
    [1, 1, 0, 0, 0, 0, 0, 0],
], dtype=np.uint8)
COCO_THIRD = np.array([  # a large person polygon, and a small sky polygon inside it listed first: sky on top
    [0, 0, 0, 0, 0, 0, 0, 0],
    [0, 1, 1, 1, 1, 1, 0, 0],
    [0, 1, 3, 3, 1, 1, 0, 0],
    [0, 1, 3, 3, 1, 1, 0, 0],
    [0, 1, 1, 1, 1, 1, 0, 0],
    [0, 1, 1, 1, 1, 1, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0],
], dtype=np.uint8)
COCO_OVERLAP = 6 + 4  # car over sky in the first image, sky inside person in the third


def rle(block: tuple[slice, slice], size: int = 8, compressed: bool = True) -> dict:
    """COCO RLE of a (size, size) mask set on ``block``: pycocotools' compressed string, or the
    uncompressed column-major run lengths (starting with a run of zeros) that COCO stores for crowds."""
    from pycocotools import mask as masks

    pixels = np.zeros((size, size), dtype=np.uint8)
    pixels[block] = 1
    if compressed:
        encoded = masks.encode(np.asfortranarray(pixels))
        return {"size": [size, size], "counts": encoded["counts"].decode()}
    flat = pixels.flatten(order="F")
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    return {"size": [size, size], "counts": np.diff(np.concatenate([[0], edges])).tolist()}


def coco_annotations() -> list[dict]:
    return [
        {"id": 1, "image_id": 1, "category_id": 12, "iscrowd": 0, "segmentation": [[0, 0, 8, 0, 8, 4, 0, 4]]},
        {"id": 2, "image_id": 1, "category_id": 3, "iscrowd": 0, "segmentation": rle((slice(2, 5), slice(2, 5)))},
        {"id": 3, "image_id": 1, "category_id": 7, "iscrowd": 1,
         "segmentation": rle((slice(6, 8), slice(0, 2)), compressed=False)},
        {"id": 4, "image_id": 3, "category_id": 12, "iscrowd": 0, "segmentation": [[2, 2, 4, 2, 4, 4, 2, 4]]},
        {"id": 5, "image_id": 3, "category_id": 7, "iscrowd": 0, "segmentation": [[1, 1, 6, 1, 6, 6, 1, 6]]},
    ]


def write_coco(root: Path, annotations: list[dict] | None = None, size: int = 8, val: bool = True) -> Path:
    """COCO's layout: ``annotations/instances_{train,val}2017.json`` and ``{train,val}2017/`` images.
    Train: image 1 (:data:`COCO_FIRST`), image 2 without annotations, image 3 (:data:`COCO_THIRD`); val: image 1."""
    annotations = coco_annotations() if annotations is None else annotations
    splits = {"train2017": ([1, 2, 3], annotations)}
    if val:  # image 1 again
        splits["val2017"] = ([1], [annotation for annotation in annotations if annotation["image_id"] == 1])
    for tag, (ids, anns) in splits.items():
        images = [{"id": image_id, "file_name": f"{tag}_{image_id:012d}.jpg", "height": size, "width": size}
                  for image_id in ids]
        for image in images:
            write_image(root / tag / image["file_name"], size, size)
        data = {"info": {"description": "segrecipes test"}, "images": images, "annotations": anns,
                "categories": [{**category, "supercategory": "thing"} for category in COCO_CATEGORIES]}
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"instances_{tag}.json").write_text(json.dumps(data))
    return root


# Label Studio: classes sorted by name (car, person, road) after background
LS_FIRST = np.array([[0] * 8] * 2 + [[0, 0, 1, 1, 1, 1, 0, 0]] * 2 + [[3, 3, 1, 1, 1, 1, 3, 3]] * 2 + [[3] * 8] * 2,
                    dtype=np.uint8)  # road brush rows 4-7, car polygon rows/cols 2-5 on top (smaller)
LS_THIRD = np.array([[2, 2, 0, 0, 0, 0, 0, 0]] * 8, dtype=np.uint8)  # person polygon, columns 0-1
LS_OVERLAP = 8
_RUN_FIELDS = (3, 4, 8, 16)


def brush_rle(mask: np.ndarray, alpha: int = 255) -> list[int]:
    """Label Studio's brush RLE of a bool mask, built from its documented bit stream: the RGBA layer
    flattened (red, alpha ``alpha`` where painted), runs as repeat chunks, lone values as literal chunks."""
    rgba = np.zeros((*mask.shape, 4), dtype=np.uint8)
    rgba[mask] = (255, 0, 0, alpha)
    flat = rgba.flatten().tolist()
    bits = [f"{len(flat):032b}", f"{8 - 1:05b}", *(f"{size - 1:04b}" for size in _RUN_FIELDS)]
    runs: list[list[int]] = []
    for value in flat:
        if runs and runs[-1][0] == value:
            runs[-1][1] += 1
        else:
            runs.append([value, 1])
    lone: list[int] = []
    for value, length in [*runs, [None, 0]]:
        if length == 1:
            lone.append(value)
            continue
        for start in range(0, len(lone), 8):  # literal chunks of up to 8 values (a 3-bit length field)
            chunk = lone[start:start + 8]
            bits += ["0", "00", f"{len(chunk) - 1:03b}", *(f"{word:08b}" for word in chunk)]
        lone = []
        while length:
            piece = min(length, 1 << 16)
            field = next(k for k, size in enumerate(_RUN_FIELDS) if piece - 1 < 1 << size)
            bits += ["1", f"{field:02b}", f"{piece - 1:0{_RUN_FIELDS[field]}b}", f"{value:08b}"]
            length -= piece
    stream = "".join(bits)
    stream += "0" * (-len(stream) % 8)
    return [int(stream[start:start + 8], 2) for start in range(0, len(stream), 8)]


def ls_result(kind: str, label: str, value: dict, result_id: str, size: int = 8) -> dict:
    return {"id": result_id, "type": kind, "from_name": "tag", "to_name": "image", "original_width": size,
            "original_height": size, "image_rotation": 0, "origin": "manual", "value": {**value, kind: [label]}}


def ls_tasks() -> list[dict]:
    """Three tasks as Label Studio's JSON export writes them: a brush and a polygon; none; a cancelled
    annotation (of a type that is not read) before one with a polygon."""
    road = np.zeros((8, 8), dtype=bool)
    road[4:] = True
    first = [ls_result("brushlabels", "road", {"format": "rle", "rle": brush_rle(road)}, "b1"),
             ls_result("polygonlabels", "car", {"points": [[25, 25], [75, 25], [75, 75], [25, 75]], "closed": True},
                       "p1")]
    third = [ls_result("polygonlabels", "person", {"points": [[0, 0], [25, 0], [25, 100], [0, 100]]}, "p3")]
    cancelled = [ls_result("rectanglelabels", "car", {"x": 0, "y": 0, "width": 50, "height": 50}, "r3")]
    return [
        {"id": 1, "data": {"image": "/data/upload/1/0a1b2c3d-street.jpg"}, "file_upload": "0a1b2c3d-street.jpg",
         "annotations": [{"id": 11, "was_cancelled": False, "result": first}], "predictions": []},
        {"id": 2, "data": {"image": "/data/local-files/?d=photos/empty.jpg"}, "annotations": []},
        {"id": 3, "data": {"image": "s3://bucket/photos/park.png"},
         "annotations": [{"id": 31, "was_cancelled": True, "result": cancelled},
                         {"id": 32, "was_cancelled": False, "result": third}]},
    ]


def write_labelstudio(root: Path, tasks: list[dict] | None = None, size: int = 8) -> Path:
    """``export.json`` (the JSON export) and the images under ``images/`` by their original names."""
    for name in ("street.jpg", "empty.jpg", "park.png"):
        write_image(root / "images" / name, size, size)
    (root / "project-1-at-2026-12-07.json").write_text(json.dumps(ls_tasks() if tasks is None else tasks))
    return root


def write_labelstudio_pngs(root: Path, email: str = "ann@lab.org") -> Path:
    """The "Brush labels to PNG" export unzipped into ``masks/`` as Label Studio's converter names and
    writes it (the brush layer's alpha, grayscale, one file per tag-label-index), with the JSON-MIN
    export beside it for the images: task 1 has a road brush and a faint stroke in annotation 11 and a
    car brush in a later annotation 12 (not read); task 2 has no PNG."""
    for name in ("street.jpg", "empty.jpg"):
        write_image(root / "images" / name, 8, 8)
    layers = {"annotation-11-by-{}-tag-road-0": LS_PNG_ROAD * 255, "annotation-11-by-{}-tag-road-1": LS_PNG_ROAD * 100,
              "annotation-11-by-{}-tag-traffic-sign-0": LS_PNG_SIGN * 255,
              "annotation-12-by-{}-tag-car-0": np.ones((8, 8), dtype=np.uint8) * 255}
    for name, alpha in layers.items():
        path = root / "masks" / f"task-1-{name.format(email)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(alpha.astype(np.uint8)).save(path)
    minimal = [{"image": "/data/upload/1/0a1b2c3d-street.jpg", "id": 1, "tag": [], "annotator": 1,
                "annotation_id": 11},
               {"image": "/data/local-files/?d=photos/empty.jpg", "id": 2}]
    (root / "project-1-at-2026-12-07-min.json").write_text(json.dumps(minimal))
    return root


LS_PNG_ROAD = np.zeros((8, 8), dtype=np.uint8)
LS_PNG_ROAD[5:] = 1
LS_PNG_SIGN = np.zeros((8, 8), dtype=np.uint8)
LS_PNG_SIGN[4:7, 6:] = 1  # overlaps the road on rows 5-6, columns 6-7: smaller, so on top
LS_PNG_MASK = np.zeros((8, 8), dtype=np.uint8)  # background 0, road 1, traffic-sign 2 (names sorted)
LS_PNG_MASK[5:] = 1
LS_PNG_MASK[4:7, 6:] = 2
