"""Tiny image/mask files, good and broken on purpose, for the data-check and bad-input tests."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

EXIF_ORIENTATION = 0x0112


def noise(height: int = 16, width: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_image(
    path: Path, height: int = 16, width: int = 16, mode: str = "RGB", orientation: int | None = None
) -> Path:
    """A noise image in ``mode``, saved in the format of its suffix, optionally with an EXIF orientation tag."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(noise(height, width, seed=len(path.name))).convert(mode)
    extra = {}
    if orientation is not None:
        exif = image.getexif()
        exif[EXIF_ORIENTATION] = orientation
        extra["exif"] = exif
    image.save(path, **extra)
    return path


def write_mask(path: Path, values: np.ndarray | list, mode: str | None = None) -> Path:
    """A PNG of raw mask values: 8-bit by default, 16-bit for uint16 arrays, or converted to ``mode``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.asarray(values)
    image = Image.fromarray(array if array.dtype == np.uint16 else array.astype(np.uint8))
    (image.convert(mode) if mode else image).save(path, format="PNG")
    return path


def write_palette_mask(path: Path, indices: np.ndarray) -> Path:
    """A palette ('P') PNG whose stored indices are ``indices`` (PASCAL VOC style)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.frombytes("P", indices.shape[::-1], indices.astype(np.uint8).tobytes())
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (252 * 3))
    image.save(path)
    return path


def write_truncated_jpeg(path: Path, size: int = 16) -> Path:
    """A JPEG cut half-way through its pixel data: the header is intact (it opens) but it cannot be decoded."""
    buffer = io.BytesIO()
    Image.fromarray(noise(size, size)).save(buffer, format="JPEG", quality=95)
    data = buffer.getvalue()
    scan = data.index(b"\xff\xda")  # start-of-scan: everything before it is header
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: scan + (len(data) - scan) // 2])
    return path


def folder_dataset(root: Path, classes: int, train: dict[str, str] | None = None, size: int = 32,
                   train_images: int = 4, val_images: int = 2, val: dict[str, str] | None = None) -> Path:
    """A folder:PATH dataset of ``size``-pixel pairs with valid labels 0..classes-1, then the defects
    of ``train`` and ``val`` applied: ``{"stem": "rgb-mask" | "no-mask" | "corrupt-image" | "bad-label"}``
    (``bad-label``: a few pixels of value ``classes``, which is no class)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(f"class{index}" for index in range(classes)) + "\n")
    labels = (np.arange(size * size).reshape(size, size) // (size * size // classes)).clip(max=classes - 1)
    for split, count in (("train", train_images), ("val", val_images)):
        for index in range(count):
            write_image(root / "images" / split / f"{split}{index}.jpg", size, size)
            write_mask(root / "masks" / split / f"{split}{index}.png", labels)
    for split, defects in (("train", train or {}), ("val", val or {})):
        for stem, defect in defects.items():
            image, mask = root / "images" / split / f"{stem}.jpg", root / "masks" / split / f"{stem}.png"
            write_image(image, size, size)
            if defect == "rgb-mask":
                write_mask(mask, labels, mode="RGB")
            elif defect == "corrupt-image":
                write_truncated_jpeg(image, size)
                write_mask(mask, labels)
            elif defect == "bad-label":
                bad = labels.copy()
                bad[-2:, -3:] = classes
                write_mask(mask, bad)
            elif defect != "no-mask":
                raise ValueError(f"unknown defect {defect!r}")
    return root
