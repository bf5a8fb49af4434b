"""A mask value that is no class, in either split, ends the run before its first step, however rarely
the sampler would draw that file; the scan is cached under a fingerprint of the files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers.bad_data import folder_dataset
from helpers.tiny import tiny_config

from segrecipes.data.check import training_checks
from segrecipes.data.errors import DataError
from segrecipes.run import build_trainer

CLASSES = 3


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("SEGRECIPES_CACHE_DIR", str(cache))
    return cache


def _config(data: Path, *overrides: str):
    return tiny_config(f"data.spec=folder:{data}", "train.duration=2ba", *overrides)


@pytest.mark.parametrize("split", ["train", "val"])
def test_a_bad_label_is_refused_when_the_run_is_built(tmp_path: Path, split: str) -> None:
    """Bug: a bad validation mask ended the run at its first evaluation, a bad training mask whenever
    the sampler first drew it (possibly hours in, and again after every resume)."""
    defects = {"zz_bad": "bad-label"}
    data = folder_dataset(tmp_path / "data", CLASSES, train_images=8, **{split: defects})
    bad = data / "masks" / split / "zz_bad.png"
    with pytest.raises(DataError, match=rf"^{bad}: mask values \[3\] are neither classes 0..2 nor ignored"):
        build_trainer(_config(data), tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing started


@pytest.mark.slow
def test_skip_bad_leaves_the_bad_pairs_out_of_both_splits_and_says_how_many(tmp_path: Path) -> None:
    data = folder_dataset(tmp_path / "data", CLASSES, {"bad": "bad-label"}, train_images=8,
                          val={"bad": "bad-label", "worse": "bad-label"})
    with pytest.warns(UserWarning) as warned:
        trainer = build_trainer(_config(data, "data.skip_bad=true"), tmp_path / "run")
    messages = [str(warning.message) for warning in warned]
    assert any("the train split without 1 bad file(s)" in message for message in messages)
    assert any("the val split without 2 bad file(s)" in message for message in messages)
    assert (len(trainer.train_data), len(trainer.val_data)) == (8, 2)
    summary = trainer.fit()  # and the run trains and evaluates on what is left
    assert summary["step"] == 2 and list(summary["iou"]) == ["class0", "class1", "class2"]


def test_the_scan_is_cached_until_a_file_changes(tmp_path: Path, private_cache: Path) -> None:
    data = folder_dataset(tmp_path / "data", CLASSES, train_images=4)
    assert training_checks(f"folder:{data}").ok
    cached = sorted((private_cache / "data-checks").glob("*.json"))
    assert len(cached) == 2  # one per split
    # a planted entry proves that the next check reads the cache instead of the files ...
    planted = {"path": "planted", "kind": "bad-label", "message": "from the cache", "severity": "error",
               "split": "train", "index": 0}
    for path in cached:
        path.write_text(json.dumps({"issues": [planted]}))
    assert [issue.message for issue in training_checks(f"folder:{data}").issues] == ["from the cache"] * 2
    # ... and a changed file (another modification time) makes it check the files again
    mask = data / "masks" / "train" / "train0.png"
    os.utime(mask, ns=(mask.stat().st_atime_ns, mask.stat().st_mtime_ns + 1_000_000))
    issues = training_checks(f"folder:{data}").issues
    assert [issue.message for issue in issues] == ["from the cache"]  # only the unchanged val split's


def test_changing_the_label_options_checks_again(tmp_path: Path) -> None:
    data = folder_dataset(tmp_path / "data", CLASSES, {"bad": "bad-label"}, train_images=2)
    (data / "classes.txt").write_text("a\nb\nc\nd\n")  # value 3 is a class now
    assert training_checks(f"folder:{data}").ok
    (data / "classes.txt").write_text("a\nb\nc\n")
    assert not training_checks(f"folder:{data}").ok


def test_an_unwritable_cache_only_costs_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("SEGRECIPES_CACHE_DIR", str(blocker))
    data = folder_dataset(tmp_path / "data", CLASSES)
    with pytest.warns(UserWarning, match="could not write the data check cache"):
        assert training_checks(f"folder:{data}").ok
