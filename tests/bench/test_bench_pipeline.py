"""``segrecipes bench data``: the real training DataLoader timed for several worker counts."""

from __future__ import annotations

import json

import pytest

from segrecipes.bench.pipeline import measure_pipeline
from segrecipes.cli.main import main
from segrecipes.config import ConfigError, load_config
from segrecipes.run import training_data


def test_data_command_times_each_worker_count_on_camvid(camvid_root, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "data", "--data", f"camvid:{camvid_root}", "--workers", "0,1", "--batch", "2",
              "--batches", "2", "--crop-size", "64", "--stage-samples", "3", "--json"])
    assert exit_info.value.code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["crop_size"] == 64
    assert [row["workers"] for row in result["results"]] == [0, 1]
    for row in result["results"]:
        assert (row["batch_size"], row["batches"]) == (2, 2)
        assert row["images_per_s"] > 0 and row["first_batch_s"] > 0
    stages = result["stages"]
    assert list(stages["ms_per_sample"]) == ["decode", "resize", "crop search", "flip", "photometric", "pad"]
    assert stages["samples"] == 3 and all(ms > 0 for ms in stages["ms_per_sample"].values())
    assert stages["total_ms"] == pytest.approx(sum(stages["ms_per_sample"].values()))


def test_the_stage_breakdown_is_printed_as_a_table(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "data", "--data", "synthetic", "--workers", "0", "--batch", "2", "--batches", "1",
              "--crop-size", "32", "--set", "data.synthetic_image_size=48", "--stage-samples", "2"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for stage in ("decode", "resize", "crop search", "flip", "photometric", "pad", "total"):
        assert stage in out


def test_timed_batches_are_capped_by_one_epoch() -> None:
    # 6 synthetic images in batches of 2: 3 batches per epoch, the first timed apart, so 2 remain
    config = load_config(overrides=["data.synthetic_train_size=6", "data.synthetic_image_size=16", "data.crop_size=16"])
    (report,) = measure_pipeline(training_data(config), [0], batch_size=2, batches=10)
    assert report.batches == 2


def test_too_small_a_dataset_or_bad_worker_counts_are_refused(capsys) -> None:
    config = load_config(overrides=["data.synthetic_train_size=3", "data.synthetic_image_size=16", "data.crop_size=16"])
    with pytest.raises(ConfigError, match="has 3 images, too few"):
        measure_pipeline(training_data(config), [0], batch_size=2, batches=1)
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "data", "--data", "synthetic", "--workers", "0,two"])
    assert exit_info.value.code == 2
    assert "--workers" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value", [("--threads", "0"), ("--stage-samples", "-1")])
def test_bad_stage_options_are_refused_before_anything_is_timed(capsys, flag: str, value: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "data", "--data", "synthetic", "--workers", "0", flag, value])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: bench data:") and flag in error and error.count("\n") == 1
