"""From a data spec to datasets and loaders: parsing, error messages, seeded access, worker independence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segrecipes.data.settings import DataSettings
from segrecipes.data.augmented import AugmentedDataset
from segrecipes.data.errors import DataError
from segrecipes.data.loader import build_train_loader
from segrecipes.data.sampler import TrainSampler
from segrecipes.data.spec import build_raw_dataset, parse_data_spec, train_transform
from segrecipes.data.synthetic import SyntheticShapes
from segrecipes.data.transforms import TrainTransform

SYNTHETIC = DataSettings(
    synthetic_train_size=24, synthetic_val_size=6, synthetic_image_size=40, crop_size=32
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("synthetic", ("synthetic", None)),
        ("camvid:/data/CamVid", ("camvid", Path("/data/CamVid"))),
        ("ADE20K:/d/ade", ("ade20k", Path("/d/ade"))),
        ("folder:C:/my:data", ("folder", Path("C:/my:data"))),
    ],
)
def test_parse_valid_specs(text: str, expected: tuple[str, Path | None]) -> None:
    assert parse_data_spec(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("camvd:/data", r"data spec 'camvd:/data': unknown kind 'camvd' \(did you mean 'camvid'\?\)"),
        ("/data/camvid", r"unknown kind '/data/camvid' \(put the kind before the path, e.g. folder:/data/camvid\)"),
        ("imagenet:/x", r"\(use KIND:PATH with a kind of ade20k, camvid, cityscapes, coco, cvat, folder, labelstudio, "
                        r"voc, or synthetic\)"),
        ("camvid", r"data spec 'camvid': missing path \(use camvid:PATH\)"),
        ("folder: ", r"missing path \(use folder:PATH\)"),
        ("synthetic:/tmp", r"'synthetic' takes no path"),
    ],
)
def test_parse_errors_name_the_spec(text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_data_spec(text)


def test_data_error_is_a_value_error() -> None:
    assert issubclass(DataError, ValueError)


def test_build_synthetic_splits() -> None:
    train, val = build_raw_dataset(SYNTHETIC, "train"), build_raw_dataset(SYNTHETIC, "val")
    assert isinstance(train, SyntheticShapes) and isinstance(val, SyntheticShapes)
    assert (len(train), len(val)) == (24, 6)
    assert train.num_classes == 6 == len(train.class_names) and train.ignore_index == 255
    image, mask = AugmentedDataset(train, train_transform(SYNTHETIC))[(3, 99)]
    assert image.shape == (3, 32, 32) and mask.shape == (32, 32)
    raw_image, _ = val[2]
    assert raw_image.shape == (3, 40, 40)  # evaluation resizes by its protocol, not the dataset
    assert not torch.equal(train[0][0], val[0][0])  # splits differ


def test_synthetic_class_count_follows_the_config() -> None:
    many = build_raw_dataset(DataSettings(synthetic_num_classes=150, synthetic_image_size=32), "train")
    assert many.num_classes == 150 and many.class_names[:2] == ["background", "disc"]
    labels = torch.cat([many[index][1].flatten() for index in range(40)]).unique()
    assert labels.max() > 5 and labels.max() < 150  # the extra classes are drawn


def test_train_transform_follows_the_config() -> None:
    cfg = DataSettings(
        crop_size=24, scale_range=(0.7, 1.3), cat_max_ratio=0.5, crop_retries=3, flip_prob=0.2, photometric=False
    )
    transform = train_transform(cfg)
    assert (transform.crop_size, transform.scale_range, transform.cat_max_ratio) == (24, (0.7, 1.3), 0.5)
    assert (transform.crop_retries, transform.flip_prob, transform.distortion) == (3, 0.2, None)


def test_build_only_val_on_the_ade20k_samples(ade20k_root: Path) -> None:
    cfg = DataSettings(spec=f"ade20k:{ade20k_root}")
    val = build_raw_dataset(cfg, "val")
    assert len(val) == 3 and val.num_classes == 150 and val.class_names[0] == "wall"
    with pytest.raises(DataError, match=r"no images found in split 'train' \(looked in .*images/training\)"):
        build_raw_dataset(cfg, "train")


def test_build_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing: folder not found"):
        build_raw_dataset(DataSettings(spec=f"camvid:{tmp_path / 'missing'}"), "train")
    root = tmp_path / "mine"
    (root / "images" / "train").mkdir(parents=True)
    (root / "masks" / "train").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(root / "images" / "train" / "a.png")
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(root / "masks" / "train" / "a.png")
    cfg = DataSettings(spec=f"folder:{root}", num_classes=2)
    assert len(build_raw_dataset(cfg, "train")) == 1
    with pytest.raises(DataError, match=r"no images found in split 'val'"):
        build_raw_dataset(cfg, "val")
    with pytest.raises(DataError, match="data.num_classes is 5 but synthetic has 6 classes"):
        build_raw_dataset(DataSettings(num_classes=5), "train")
    with pytest.raises(DataError, match="split 'test'"):
        build_raw_dataset(SYNTHETIC, "test")


def test_augmented_dataset_is_a_function_of_the_key() -> None:
    dataset = AugmentedDataset(SyntheticShapes(8, image_size=40), TrainTransform(32))
    first = dataset[(5, 123)]
    assert torch.equal(dataset[(5, 123)][0], first[0]) and torch.equal(dataset[(5, 123)][1], first[1])
    assert not torch.equal(dataset[(5, 124)][0], first[0])
    assert torch.equal(dataset[5][0], dataset[(5, 5)][0])
    assert len(dataset) == 8


def test_a_dataset_without_seeds_is_indexed_plainly_by_the_loader() -> None:
    """A user's own dataset takes ``ds[i]``; only datasets that say ``seeded = True`` get ``(i, seed)``."""
    raw = SyntheticShapes(8, image_size=32)
    sampler = TrainSampler(len(raw), batch_size_per_rank=4, seed=0)
    images, masks = next(iter(build_train_loader(raw, sampler, 4)))
    first = [index for index, _ in sampler][:4]
    assert torch.equal(images, torch.stack([raw[index][0] for index in first]))
    assert torch.equal(masks, torch.stack([raw[index][1] for index in first]))


def _collect(loader: torch.utils.data.DataLoader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(images.clone(), masks.clone()) for images, masks in loader]


def test_loader_batches_are_the_same_with_and_without_workers() -> None:
    dataset = AugmentedDataset(SyntheticShapes(12, image_size=40), TrainTransform(32))
    sampler = TrainSampler(len(dataset), batch_size_per_rank=4, seed=0)
    sampler.set_epoch(1)
    serial = _collect(build_train_loader(dataset, sampler, 4, num_workers=0, persistent_workers=True))
    parallel = _collect(build_train_loader(dataset, sampler, 4, num_workers=2, pin_memory=True))
    assert len(serial) == len(parallel) == 3
    for (images, masks), (other_images, other_masks) in zip(serial, parallel):
        assert images.shape == (4, 3, 32, 32) and images.dtype == torch.uint8
        assert masks.shape == (4, 32, 32) and masks.dtype == torch.uint8
        assert torch.equal(images, other_images) and torch.equal(masks, other_masks)
    keys = list(sampler)
    assert torch.equal(serial[0][0][1], dataset[keys[1]][0])


def test_loader_batch_must_divide_the_rank_batch() -> None:
    dataset = AugmentedDataset(SyntheticShapes(12, image_size=40), TrainTransform(32))
    with pytest.raises(ValueError, match="batch_size 3 must divide"):
        build_train_loader(dataset, TrainSampler(12, 4, seed=0), 3)
