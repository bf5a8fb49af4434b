"""``cityscapes:PATH``: label ids become the 19 official train ids through the table stored as data,
everything else 255; images pair with their masks city by city."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers.exports import CITYSCAPES_TRAIN_IDS, write_cityscapes
from segrecipes.cli.main import main
from segrecipes.data.cityscapes import CLASS_NAMES, LABEL_TABLE
from segrecipes.data.errors import DataError
from segrecipes.data.settings import DataSettings
from segrecipes.data.spec import build_raw_dataset
from segrecipes.data.stats import cached_stats

FRAMES = {"train": ["aachen_000000_000019", "bochum_000000_000313"], "val": ["lindau_000000_000019"]}


def test_the_official_table_has_19_train_ids_and_ignores_the_rest() -> None:
    assert len(CLASS_NAMES) == 19 and CLASS_NAMES[0] == "road" and CLASS_NAMES[18] == "bicycle"
    train_ids = LABEL_TABLE[:34].tolist()
    assert sorted(value for value in train_ids if value != 255) == list(range(19))
    assert train_ids.count(255) == 34 - 19
    assert int(LABEL_TABLE[34]) == -1  # no label id above 33: a bad value, reported by the checks


def test_label_ids_become_train_ids_pixel_for_pixel(tmp_path: Path) -> None:
    root = write_cityscapes(tmp_path, FRAMES)
    train = build_raw_dataset(DataSettings(spec=f"cityscapes:{root}"), "train")
    assert [Path(train.image_path(index)).parent.name for index in range(len(train))] == ["aachen", "bochum"]
    assert train.mask_path(0).endswith("aachen_000000_000019_gtFine_labelIds.png")
    for index in range(len(train)):
        np.testing.assert_array_equal(train[index][1].numpy(), CITYSCAPES_TRAIN_IDS)
    assert len(build_raw_dataset(DataSettings(spec=f"cityscapes:{root}"), "val")) == 1


def test_an_image_without_its_mask_is_one_line_and_data_check_lists_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_cityscapes(tmp_path, FRAMES)
    missing = root / "gtFine" / "train" / "bochum" / "bochum_000000_000313_gtFine_labelIds.png"
    missing.unlink()
    with pytest.raises(DataError, match=r"bochum_000000_000313_leftImg8bit\.png: no mask .*_gtFine_labelIds\.png"):
        build_raw_dataset(DataSettings(spec=f"cityscapes:{root}"), "train")
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "check", f"cityscapes:{root}"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 2 and "missing-mask" in out and "1 train, 1 val pairs checked" in out


def test_data_stats_counts_the_train_ids(tmp_path: Path) -> None:
    stats = cached_stats(DataSettings(spec=f"cityscapes:{write_cityscapes(tmp_path, FRAMES)}"), "train")
    expected = np.bincount(CITYSCAPES_TRAIN_IDS[CITYSCAPES_TRAIN_IDS != 255], minlength=19) * 2
    assert stats.class_pixels == expected.tolist() and stats.ignored_pixels == 2 * 3
