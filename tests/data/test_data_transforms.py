"""The reference training pipeline, checked against hand-built expectations and against PIL (the
reference pipeline's image library)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from segrecipes.data.normalize import MEAN_PIXEL
from segrecipes.data.transforms import ResizedMask, TrainTransform, nearest_indices, resize_image


def _pair(height: int, width: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
    mask = torch.randint(0, 5, (height, width), generator=generator)
    return image, mask


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("size", [(50, 70), (20, 12), (120, 90)])
def test_train_output_shapes_and_dtypes(size: tuple[int, int]) -> None:
    image, mask = _pair(*size)
    transform = TrainTransform(32)
    for seed in range(5):
        out_image, out_mask = transform(image, mask, _seeded(seed))
        assert out_image.shape == (3, 32, 32) and out_image.dtype == torch.uint8
        assert out_mask.shape == (32, 32) and out_mask.dtype == mask.dtype  # the mask's dtype is kept
        assert set(out_mask.unique().tolist()) <= {0, 1, 2, 3, 4, 255}


def test_same_seed_same_output_and_different_seed_differs() -> None:
    image, mask = _pair(60, 80)
    transform = TrainTransform(32)
    first = transform(image, mask, _seeded(7))
    again = transform(image, mask, _seeded(7))
    other = transform(image, mask, _seeded(8))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])


def test_scale_resizes_to_a_square_then_crops() -> None:
    # A non-square 16x24 input at scale 2 with crop 32 becomes a 64x64 square (aspect not kept):
    # every output pixel takes the source pixel under its centre, as PIL's nearest does.
    mask = torch.arange(16 * 24).view(16, 24) % 200
    image = torch.zeros(3, 16, 24, dtype=torch.uint8)
    transform = TrainTransform(32, scale_range=(2.0, 2.0), cat_max_ratio=1.0, flip_prob=0.0, photometric=False)
    rows = ((torch.arange(64) + 0.5) * 16 / 64).long()
    cols = ((torch.arange(64) + 0.5) * 24 / 64).long()
    resized = mask[rows][:, cols]
    windows = {resized[top : top + 32, left : left + 32].numpy().tobytes() for top in range(33) for left in range(33)}
    for seed in range(5):
        _, out_mask = transform(image, mask, _seeded(seed))
        assert out_mask.numpy().tobytes() in windows


def _balanced(crop: torch.Tensor, ratio: float) -> bool:
    """Hand-written mmseg rule: at least two labelled classes and none covering ratio or more."""
    labels = [value for value in crop.flatten().tolist() if value != 255]
    counts = {label: labels.count(label) for label in set(labels)}
    return len(counts) > 1 and max(counts.values()) / len(labels) < ratio


def test_cat_max_ratio_is_enforced_on_a_constructed_mask() -> None:
    # Class 1 is a 28x28 block in the corner of a 64x64 class-0 mask; a 32x32 crop is balanced only
    # when it holds more than 256 pixels of the block, i.e. near the corner.
    mask = torch.zeros(64, 64, dtype=torch.int64)
    mask[:28, :28] = 1
    mask[40:, 40:] = 255
    balanced = {
        (top, left)
        for top in range(33)
        for left in range(33)
        if _balanced(mask[top : top + 32, left : left + 32], 0.75)
    }
    assert 0 < len(balanced) < 33 * 33 / 4

    # the image's first two channels hold each pixel's row and column: a crop's corner says where it is
    rows, columns = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    image = torch.stack([rows, columns, rows]).to(torch.uint8)

    def corners(transform: TrainTransform) -> list[tuple[int, int]]:
        crops = [transform.crop(image, mask, _seeded(seed)) for seed in range(20)]
        assert all(cropped.shape == (3, 32, 32) and labels.shape == (32, 32) for cropped, labels in crops)
        assert all(torch.equal(labels, mask[int(cropped[0, 0, 0]):, int(cropped[1, 0, 0]):][:32, :32])
                   for cropped, labels in crops)
        return [(int(cropped[0, 0, 0]), int(cropped[1, 0, 0])) for cropped, _ in crops]

    assert all(corner in balanced for corner in corners(TrainTransform(32, cat_max_ratio=0.75, crop_retries=200)))
    assert not all(corner in balanced for corner in corners(TrainTransform(32, cat_max_ratio=1.0)))


def test_cat_max_ratio_in_the_full_transform() -> None:
    mask = torch.zeros(64, 64, dtype=torch.int64)
    mask[:28, :28] = 1
    image = torch.zeros(3, 64, 64, dtype=torch.uint8)
    big = TrainTransform(32, scale_range=(2.0, 2.0), crop_retries=200, photometric=False)
    for seed in range(10):
        _, out_mask = big(image, mask, _seeded(seed))
        assert _balanced(out_mask, 0.75)


@pytest.mark.parametrize("flip_prob", [0.0, 1.0])
def test_flip_moves_image_and_mask_together(flip_prob: float) -> None:
    # Every column has its own value in the image and the mask, so any misalignment shows.
    columns = torch.arange(32)
    image = (columns * 7 % 256).to(torch.uint8).expand(3, 32, 32).clone()
    mask = (columns % 5).expand(32, 32).clone()
    transform = TrainTransform(32, scale_range=(1.0, 1.0), cat_max_ratio=1.0, flip_prob=flip_prob, photometric=False)
    out_image, out_mask = transform(image, mask, _seeded(0))
    expected_image, expected_mask = (image.flip(-1), mask.flip(-1)) if flip_prob else (image, mask)
    assert torch.equal(out_image, expected_image)
    assert torch.equal(out_mask, expected_mask)


def test_flip_happens_about_half_the_time() -> None:
    image = torch.zeros(3, 16, 16, dtype=torch.uint8)
    mask = torch.arange(16).expand(16, 16) % 4
    transform = TrainTransform(16, scale_range=(1.0, 1.0), cat_max_ratio=1.0, photometric=False)
    flipped = sum(torch.equal(transform(image, mask, _seeded(seed))[1], mask.flip(-1)) for seed in range(200))
    assert 70 < flipped < 130


def test_padding_uses_mean_pixel_and_ignore() -> None:
    image, mask = _pair(32, 32)
    transform = TrainTransform(32, scale_range=(0.5, 0.5), flip_prob=0.0, photometric=False)
    out_image, out_mask = transform(image, mask, _seeded(3))
    # Scale 0.5 gives a 16x16 image (nearest takes the pixel under each output centre: every second
    # one, starting at the second), padded bottom/right.
    assert torch.equal(out_mask[:16, :16], mask[1::2, 1::2])
    assert (out_mask[16:, :] == 255).all() and (out_mask[:, 16:] == 255).all()
    mean = torch.tensor(MEAN_PIXEL, dtype=torch.uint8).view(3, 1)
    assert (out_image[:, 16:, :].reshape(3, -1) == mean).all()
    assert (out_image[:, :, 16:].reshape(3, -1) == mean).all()


def test_photometric_changes_only_the_image() -> None:
    image, mask = _pair(32, 32)
    plain = TrainTransform(32, scale_range=(1.0, 1.0), cat_max_ratio=1.0, photometric=False)
    distorted = TrainTransform(32, scale_range=(1.0, 1.0), cat_max_ratio=1.0, photometric=True)
    changed = 0
    for seed in range(10):
        plain_image, plain_mask = plain(image, mask, _seeded(seed))
        distorted_image, distorted_mask = distorted(image, mask, _seeded(seed))
        assert torch.equal(plain_mask, distorted_mask)
        changed += not torch.equal(plain_image, distorted_image)
    assert changed >= 5


@pytest.mark.parametrize("side", [1024, 700, 512, 333])
def test_training_masks_are_resized_as_pil_resizes_them(side: int) -> None:
    """Bug: torch's legacy nearest shifted masks by up to a source pixel against the resized image
    (here 2.5-18% of the pixels of a 512x683 mask differed from what PIL, and the evaluation, produce).

    The mask is blocks of 7 x 13 pixels of random labels, so a shifted boundary shows; PIL's nearest
    takes the pixel under each output pixel's centre, in fixed-point arithmetic, which can round an
    exact tie the other way than torch's floats: these sizes have no such tie."""
    generator = torch.Generator().manual_seed(0)
    blocks = torch.randint(0, 150, (512 // 7 + 1, 683 // 13 + 1), generator=generator)
    mask = blocks.repeat_interleave(7, 0).repeat_interleave(13, 1)[:512, :683]
    resized = ResizedMask(mask, side, side).crop((0, 0, side, side))
    reference = Image.fromarray(mask.numpy().astype(np.uint8)).resize((side, side), Image.Resampling.NEAREST)
    assert torch.equal(resized, torch.from_numpy(np.array(reference)).long())


def test_images_are_resized_close_to_pil_bilinear() -> None:
    image = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 64, 86), dtype=np.uint8))
    out = resize_image(image, 40, 40)
    reference = Image.fromarray(image.permute(1, 2, 0).numpy()).resize((40, 40), Image.Resampling.BILINEAR)
    difference = (out.int() - torch.from_numpy(np.array(reference)).permute(2, 0, 1).int()).abs()
    assert difference.max() <= 1  # antialiased bilinear, as PIL: rounding differs by at most one level


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="crop_size"):
        TrainTransform(0)


def test_a_mask_cropped_while_resizing_equals_the_crop_of_the_whole_resized_mask() -> None:
    """The crop stage resizes only the part of the mask it keeps; the pixels must be those of resizing it
    whole (what the evaluation and PIL do), for up- and downscaling and any box."""
    generator = torch.Generator().manual_seed(0)
    for _ in range(40):
        height, width, side = (int(value) for value in torch.randint(1, 300, (3,), generator=generator))
        mask = torch.randint(0, 256, (height, width), dtype=torch.uint8, generator=generator)
        whole = F.resize(mask[None], [side, side], interpolation=F.InterpolationMode.NEAREST_EXACT)[0]
        crop = int(torch.randint(1, side + 1, (), generator=generator))
        top, left = (int(value) for value in torch.randint(0, side - crop + 1, (2,), generator=generator))
        window = ResizedMask(mask, side, side).crop((top, left, crop, crop))
        assert window.is_contiguous() and torch.equal(window, whole[top : top + crop, left : left + crop])


def test_nearest_indices_follow_torch_at_exact_ties() -> None:
    """2 pixels to 141: output pixel 70's centre falls exactly on the source boundary (70.5 * 2 / 141 = 1);
    torch's kernel takes pixel 1 there, where float32 arithmetic written out by hand gives 0."""
    row = torch.tensor([[[0, 1]]], dtype=torch.uint8)
    resized = F.resize(row, [1, 141], interpolation=F.InterpolationMode.NEAREST_EXACT)[0, 0]
    assert resized[70] == 1 and torch.equal(nearest_indices(2, 141).long(), resized.long())


def test_an_image_no_larger_than_the_crop_is_kept_whole_without_drawing() -> None:
    """As the reference: no crop and no search when the resized image fits in the crop (and no random
    numbers spent on boxes that cannot differ)."""
    image, mask = _pair(20, 20)
    transform = TrainTransform(32, photometric=False)
    generator = _seeded(0)
    before = generator.get_state()
    out_image, out_mask = transform.crop(image, mask, generator)
    assert torch.equal(generator.get_state(), before)
    assert torch.equal(out_image, image) and torch.equal(out_mask, mask)


def test_stages_in_order_make_the_transform() -> None:
    image, mask = _pair(50, 70)
    mask = mask.to(torch.uint8)
    transform = TrainTransform(32)
    assert [name for name, _ in transform.stages()] == ["resize", "crop search", "flip", "photometric", "pad"]
    for seed in range(5):
        staged, generator = (image, mask), _seeded(seed)
        for _, stage in transform.stages():
            staged = stage(*staged, generator)
        whole = transform(image, mask, _seeded(seed))
        assert torch.equal(staged[0], whole[0]) and torch.equal(staged[1], whole[1])
        assert whole[1].dtype == torch.uint8  # labels stay one byte until the trainer widens them on the device
