"""Dataset statistics against numbers counted by hand, their cache, `segrecipes data stats`, and the run's use."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.bad_data import write_mask
from helpers.tiny import tiny_config
from PIL import Image

from segrecipes.cli.main import main
from segrecipes.config import ConfigError, RunConfig, build_config
from segrecipes.data.settings import DataSettings
from segrecipes.data import stats as stats_module
from segrecipes.data.spec import build_raw_dataset
from segrecipes.data.stats import DatasetStats, cached_stats, dataset_stats, median_frequency_weights
from segrecipes.run import build_trainer, resolved_statistics

# Image "a": 4 wide x 2 high, every pixel (10, 20, 30); mask: class 0 x4, class 1 x2, ignored x2.
# Image "b": 2 x 2, red 0/100/200/50, green 0, blue 255; mask: class 2 x3, class 0 x1. Class 3 ("d") never occurs.
MASK_A = [[0, 0, 1, 1], [0, 0, 255, 255]]
MASK_B = [[2, 2], [2, 0]]
RED_B = [[0, 100], [200, 50]]
CLASS_PIXELS = [5, 2, 3, 0]
CLASS_IMAGE_PIXELS = [8 + 4, 8, 4, 0]
# freq = 5/12, 2/8, 3/4 (class 3 absent); median 5/12
WEIGHTS = [1.0, (5 / 12) / (2 / 8), (5 / 12) / (3 / 4), 1.0]
PIXELS = 12
SUMS = [8 * 10 + (0 + 100 + 200 + 50), 8 * 20, 8 * 30 + 4 * 255]
SQUARES = [8 * 10**2 + (0 + 100**2 + 200**2 + 50**2), 8 * 20**2, 8 * 30**2 + 4 * 255**2]
MEAN = [total / PIXELS for total in SUMS]
STD = [math.sqrt(square / PIXELS - mean**2) for square, mean in zip(SQUARES, MEAN)]


def _tiny_dataset(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "classes.txt").write_text("a\nb\nc\nd\n")
    image_a = np.broadcast_to(np.array([10, 20, 30], dtype=np.uint8), (2, 4, 3))
    image_b = np.stack([np.array(RED_B), np.zeros((2, 2)), np.full((2, 2), 255)], axis=-1).astype(np.uint8)
    for stem, image, mask in (("a", image_a, MASK_A), ("b", image_b, MASK_B)):
        (root / "images" / "train").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(image)).save(root / "images" / "train" / f"{stem}.png")
        write_mask(root / "masks" / "train" / f"{stem}.png", np.array(mask))
    return root


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SEGRECIPES_CACHE_DIR", str(tmp_path / "cache"))
    return _tiny_dataset(tmp_path / "data")


def _check_hand_numbers(stats: DatasetStats) -> None:
    assert stats.num_images == 2 and stats.class_names == ["a", "b", "c", "d"]
    assert stats.class_pixels == CLASS_PIXELS and stats.class_image_pixels == CLASS_IMAGE_PIXELS
    assert stats.ignored_pixels == 2
    assert stats.sizes == {"4x2": 1, "2x2": 1}
    assert stats.channel_mean == pytest.approx(MEAN, rel=1e-12)
    assert stats.channel_std == pytest.approx(STD, rel=1e-12)
    assert stats.frequencies == pytest.approx([5 / 10, 2 / 10, 3 / 10, 0.0])


def test_dataset_stats_match_the_hand_count(root: Path) -> None:
    dataset = build_raw_dataset(DataSettings(spec=f"folder:{root}"), "train")
    stats = dataset_stats(dataset, f"folder:{root}", "train", workers=2)
    _check_hand_numbers(stats)
    assert median_frequency_weights(stats) == pytest.approx(WEIGHTS, rel=1e-12)
    assert DatasetStats.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats


def test_a_dataset_without_read_stored_is_indexed() -> None:
    class Pairs:
        class_names = ["x", "y"]

        def __len__(self) -> int:
            return 1

        def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.tensor([[[1.0, 3.0]]]), torch.tensor([[1, 1]], dtype=torch.uint8)

    stats = dataset_stats(Pairs(), "mine", "train")
    assert stats.class_pixels == [0, 2] and stats.channel_mean == [2.0] and stats.channel_std == [1.0]
    assert median_frequency_weights(stats) == [1.0, 1.0]  # the absent class gets 1.0


def test_cached_stats_are_read_back_until_a_file_changes(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = DataSettings(spec=f"folder:{root}")
    first = cached_stats(cfg)
    (cached,) = (Path(stats_module.cache_folder()) / "data-stats").glob("*.json")
    counted = []
    monkeypatch.setattr(stats_module, "dataset_stats", lambda *args, **kwargs: counted.append(args) or first)
    assert cached_stats(cfg) == first and not counted  # from the cache
    assert cached_stats(cfg.model_copy(update={"ignore_value": 0})) is first and len(counted) == 1  # another mapping
    write_mask(root / "masks" / "train" / "b.png", np.array([[2, 2], [2, 2]]))
    cached_stats(cfg)
    assert len(counted) == 2  # the rewritten mask changes the key
    assert not list(cached.parent.glob(".*.tmp-*"))


def _cli(*args: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "stats", *args])
    return exit_info.value.code


def test_cli_prints_the_table_and_writes_json_next_to_the_dataset(root: Path, capsys: pytest.CaptureFixture) -> None:
    assert _cli(f"folder:{root}") == 0
    out = capsys.readouterr().out
    assert "median-freq weight" in out and "1.6667" in out and "0.5556" in out
    assert "4x2: 1" in out and "written:" in out
    written = json.loads((root / "data-stats-train.json").read_text())
    assert written["class_pixels"] == CLASS_PIXELS
    assert written["median_frequency_weights"] == pytest.approx(WEIGHTS)


def test_cli_json_and_out_file_or_folder(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert _cli(f"folder:{root}", "--json", "--out", str(tmp_path / "mine.json")) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "mine.json").read_text())
    assert printed["channel_mean"] == pytest.approx(MEAN)
    folder = tmp_path / "reports"
    folder.mkdir()
    assert _cli(f"folder:{root}", "--out", str(folder)) == 0
    assert json.loads((folder / "data-stats-train.json").read_text())["class_image_pixels"] == CLASS_IMAGE_PIXELS


def test_cli_warns_when_the_dataset_folder_is_read_only(
    root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    real_write = stats_module.write_json

    def read_only(path: Path, data: dict) -> None:
        if path.parent == root:
            raise PermissionError(13, "Permission denied")
        real_write(path, data)

    monkeypatch.setattr("segrecipes.cli.data.write_json", read_only)
    assert _cli(f"folder:{root}") == 0
    out = capsys.readouterr().out
    assert "warning" in out and "not written (Permission denied)" in out and "--out" in out


def test_cli_refuses_a_bad_spec_in_one_line(capsys: pytest.CaptureFixture) -> None:
    assert _cli("nonsense:/x") == 2 and "unknown kind" in capsys.readouterr().err


def _run_config(root: Path, data: dict | None = None, loss: dict | None = None) -> RunConfig:
    return build_config({"data": {"spec": f"folder:{root}", **(data or {})}, "loss": loss or {},
                         "train": {"global_batch_size": 2}}, "test")


def test_resolved_statistics_replaces_auto_by_the_training_numbers(root: Path) -> None:
    config = _run_config(root, data={"mean": "auto", "std": "auto"})
    resolved = resolved_statistics(config)
    assert resolved.data.mean == pytest.approx(MEAN) and resolved.data.std == pytest.approx(STD)
    assert config.data.mean == "auto"  # the given config is left as it was
    given = _run_config(root, data={"mean": [1.0, 2.0, 3.0], "std": [4.0, 5.0, 6.0]})
    assert resolved_statistics(given) is given


def _with_val_and_a_bad_pair(root: Path) -> Path:
    """The tiny dataset with a val split, and a third training pair whose mask holds a label out of range."""
    for kind in ("images", "masks"):
        (root / kind / "val").mkdir()
        for stem in ("a", "b"):
            (root / kind / "val" / f"{stem}.png").write_bytes((root / kind / "train" / f"{stem}.png").read_bytes())
    Image.fromarray(np.full((2, 2, 3), 250, dtype=np.uint8)).save(root / "images" / "train" / "c.png")
    write_mask(root / "masks" / "train" / "c.png", np.full((2, 2), 9))
    return root


def test_the_run_resolves_auto_statistics_and_class_weights_without_skipped_pairs(root: Path) -> None:
    """``build_trainer`` counts the split as it trains on it (the bad pair left out by ``data.skip_bad``), keeps
    the numbers in the config it saves, and weighs the loss by median frequency."""
    config = _run_config(_with_val_and_a_bad_pair(root), data={"mean": "auto", "std": "auto", "skip_bad": True},
                         loss={"class_weights": "auto"})
    with pytest.warns(UserWarning, match="without 1 bad file"):
        trainer = build_trainer(config, None)
    assert trainer.config["data"]["mean"] == pytest.approx(MEAN) and trainer.config["data"]["std"] == pytest.approx(STD)
    assert trainer.loss_fn.class_weights.tolist() == pytest.approx(WEIGHTS)
    image, _ = trainer.val_data[0]  # normalized with the resolved numbers
    assert image[:, 0, 0].tolist() == pytest.approx([(value - MEAN[c]) / STD[c] for c, value in enumerate((10, 20, 30))], rel=1e-5)


def test_class_weights_of_another_length_are_refused_before_any_work(root: Path) -> None:
    config = _run_config(_with_val_and_a_bad_pair(root), data={"skip_bad": True}, loss={"class_weights": [1.0, 2.0]})
    with pytest.raises(ConfigError, match="loss.class_weights has 2 values but .* has 4 classes"):
        build_trainer(config, None)


def test_cli_out_that_cannot_be_written_is_an_error(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "a-file").write_text("")
    assert _cli(f"folder:{root}", "--out", str(tmp_path / "a-file" / "stats.json")) == 2
    assert "cannot write the statistics" in capsys.readouterr().err


def test_the_trainer_loss_gets_auto_class_weights_on_synthetic_data() -> None:
    config = tiny_config("loss.class_weights=auto", "loss.name=dice_ce", "train.duration=1ba")
    trainer = build_trainer(config, None)
    raw = build_raw_dataset(config.data, "train")
    expected = median_frequency_weights(dataset_stats(raw, config.data.spec, "train"))
    assert trainer.loss_fn.class_weights.tolist() == pytest.approx(expected)
    trainer.fit()
