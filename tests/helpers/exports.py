"""Labelling-tool exports written the way each tool writes them, with tiny hand-drawn masks."""

from __future__ import annotations

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
