"""ADE20k, CamVid and folder layouts on tiny files written here, and on the real shared samples."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segrecipes.data.ade20k import ADE20k
from segrecipes.data.camvid import CamVid
from segrecipes.data.errors import DataError
from segrecipes.data.folder import SegmentationFolder


def _write_image(path: Path, height: int = 6, width: int = 8, suffix: str = ".png") -> Path:
    path = path.with_suffix(suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(len(path.name)).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _write_mask(path: Path, values: np.ndarray) -> Path:
    path = path.with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values).save(path)
    return path


def _raw(values: list[list[int]], dtype: type = np.uint8) -> np.ndarray:
    return np.array(values, dtype=dtype)


RAW = _raw([[0, 1, 2, 3], [255, 3, 2, 1]])


def _folder(root: Path, raw: np.ndarray = RAW, classes: list[str] | None = ("a", "b", "c", "d")) -> Path:
    height, width = raw.shape
    _write_image(root / "images" / "train" / "one", height, width, ".jpg")
    _write_mask(root / "masks" / "train" / "one", raw)
    if classes is not None:
        (root / "classes.txt").write_text("\n".join(classes) + "\n\n")
    return root


# --- folder:PATH ---------------------------------------------------------------------------------


def test_folder_reads_images_masks_and_class_names(tmp_path: Path) -> None:
    dataset = SegmentationFolder(_folder(tmp_path), "train")
    assert len(dataset) == 1 and dataset.class_names == ["a", "b", "c", "d"] and dataset.num_classes == 4
    image, mask = dataset[0]
    assert image.shape == (3, 2, 4) and image.dtype == torch.uint8
    assert mask.dtype == torch.uint8  # class indices travel as uint8 (the trainer widens them on the device)
    assert mask.tolist() == [[0, 1, 2, 3], [255, 3, 2, 1]]
    assert dataset.image_path(0).endswith("one.jpg") and dataset.mask_path(0).endswith("one.png")


def test_folder_reduce_zero_label(tmp_path: Path) -> None:
    dataset = SegmentationFolder(_folder(tmp_path, classes=["b", "c", "d"]), "train", reduce_zero_label=True)
    assert dataset[0][1].tolist() == [[255, 0, 1, 2], [255, 2, 1, 0]]


def test_folder_ignore_value(tmp_path: Path) -> None:
    raw = _raw([[0, 7, 1], [7, 2, 0]])
    dataset = SegmentationFolder(_folder(tmp_path, raw, classes=None), "train", num_classes=3, ignore_value=7)
    assert dataset.class_names == ["class_0", "class_1", "class_2"]
    assert dataset[0][1].tolist() == [[0, 255, 1], [255, 2, 0]]


def test_folder_sixteen_bit_masks(tmp_path: Path) -> None:
    raw = _raw([[0, 1000], [2, 1]], dtype=np.uint16)
    dataset = SegmentationFolder(_folder(tmp_path, raw, classes=None), "train", num_classes=3, ignore_value=1000)
    assert dataset[0][1].tolist() == [[0, 255], [2, 1]]


def test_folder_value_outside_the_classes_is_an_error(tmp_path: Path) -> None:
    dataset = SegmentationFolder(_folder(tmp_path, classes=["a", "b"]), "train")
    with pytest.raises(DataError, match=r"one\.png: mask values \[2, 3\] are neither classes 0\.\.1"):
        dataset[0]


def test_folder_class_names_need_a_file_or_num_classes(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="classes.txt: not found.*data.num_classes"):
        SegmentationFolder(_folder(tmp_path, classes=None), "train")


def test_folder_classes_file_and_num_classes_must_agree(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="lists 4 classes but data.num_classes is 5"):
        SegmentationFolder(_folder(tmp_path), "train", num_classes=5)


def test_folder_with_more_classes_than_the_ignore_index_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="num_classes 300 must be between 1 and 255"):
        SegmentationFolder(_folder(tmp_path, classes=None), "train", num_classes=300)


def test_folder_image_without_mask_is_named(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    _write_image(root / "images" / "train" / "two")
    with pytest.raises(DataError, match=r"two\.png: no mask two\.png in \S*masks/train$"):
        SegmentationFolder(root, "train")
    _write_image(root / "images" / "train" / "three")
    with pytest.raises(DataError, match=r"three\.png: no mask three\.png in .*masks/train \(1 more such problems\)"):
        SegmentationFolder(root, "train")


def test_folder_missing_root_and_absent_split(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nowhere: folder not found"):
        SegmentationFolder(tmp_path / "nowhere", "train")
    assert len(SegmentationFolder(_folder(tmp_path), "val")) == 0


def test_mask_of_another_size_or_with_colour_channels(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    _write_mask(root / "masks" / "train" / "one", _raw([[0, 1], [1, 0]]))
    with pytest.raises(DataError, match="mask is 2x2 but its image one.jpg is 4x2"):
        SegmentationFolder(root, "train")[0]
    rgb = np.zeros((2, 4, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(root / "masks" / "train" / "one.png")
    with pytest.raises(DataError, match="mask has 3 channels"):
        SegmentationFolder(root, "train")[0]


def test_undecodable_file_is_named(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    (root / "images" / "train" / "one.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"one\.jpg: cannot decode"):
        SegmentationFolder(root, "train")[0]


# --- camvid:PATH and ade20k:PATH on tiny trees ------------------------------------------------------


def test_camvid_layout_maps_void_to_ignore(tmp_path: Path) -> None:
    _write_image(tmp_path / "val" / "f1", 2, 3)
    _write_mask(tmp_path / "valannot" / "f1", _raw([[0, 10, 11], [5, 11, 3]]))
    dataset = CamVid(tmp_path, "val")
    assert dataset.num_classes == 11 and dataset.ignore_index == 255
    assert dataset[0][1].tolist() == [[0, 10, 255], [5, 255, 3]]
    assert len(CamVid(tmp_path, "train")) == 0
    with pytest.raises(DataError, match="no split 'validation'"):
        CamVid(tmp_path, "validation")


@pytest.mark.parametrize("give_parent", [True, False])
def test_ade20k_layout_shifts_labels(tmp_path: Path, give_parent: bool) -> None:
    base = tmp_path / "ADEChallengeData2016"
    _write_image(base / "images" / "validation" / "ADE_val_1", 2, 3, ".jpg")
    _write_mask(base / "annotations" / "validation" / "ADE_val_1", _raw([[0, 1, 150], [2, 0, 75]]))
    dataset = ADE20k(tmp_path if give_parent else base, "val")
    assert dataset.num_classes == 150
    assert dataset[0][1].tolist() == [[255, 0, 149], [1, 255, 74]]
    assert len(ADE20k(tmp_path, "train")) == 0


def test_ade20k_wrong_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not an ADE20k folder"):
        ADE20k(tmp_path, "val")


# --- the real shared data ------------------------------------------------------------------------


def test_real_camvid(camvid_root: Path) -> None:
    train, val = CamVid(camvid_root, "train"), CamVid(camvid_root, "val")
    assert (len(train), len(val)) == (367, 101)
    listed = [line.split(maxsplit=1)[1] for line in (camvid_root / "classes.txt").read_text().splitlines()[:11]]
    assert train.class_names == listed
    for index in (0, 200, 366):
        image, mask = train[index]
        assert image.shape == (3, 360, 480) and mask.shape == (360, 480)
        raw = torch.from_numpy(np.array(Image.open(train.mask_path(index)))).long()
        assert torch.equal(mask, torch.where(raw == 11, 255, raw))
    values = torch.cat([val[index][1].unique() for index in range(0, 101, 20)]).unique().tolist()
    assert set(values) <= set(range(11)) | {255} and len(values) >= 8


def test_real_ade20k_samples(ade20k_root: Path) -> None:
    val = ADE20k(ade20k_root, "val")
    assert len(val) == 3 and len(ADE20k(ade20k_root, "train")) == 0
    for index in range(3):
        image, mask = val[index]
        raw = torch.from_numpy(np.array(Image.open(val.mask_path(index)))).long()
        assert image.shape[1:] == mask.shape == raw.shape
        assert torch.equal(mask, torch.where(raw == 0, 255, raw - 1))
        assert int(mask[mask != 255].max()) <= 149


def test_ade20k_class_names_are_the_first_names_of_object_info(ade20k_root: Path) -> None:
    with open(ade20k_root / "objectInfo150.csv") as file:
        rows = list(csv.DictReader(file))
    names = ADE20k(ade20k_root, "val").class_names
    assert len(names) == len(rows) == 150 == len(set(names))
    for name, row in zip(names, rows):
        # The table joins the words of a name and its synonyms with ';': a name is a prefix of its row.
        words = row["Name"].split(";")
        assert name.split() == words[: len(name.split())], row["Idx"]
