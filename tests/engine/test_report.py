"""``report.html``: written at the end of every run and by ``segrecipes report``, one self-contained
file with every part a person reads a run by."""

from __future__ import annotations

import re

import pytest

from segrecipes.cli.main import main
from segrecipes.config import load_config
from segrecipes.run import build_trainer

SECTIONS = ("Result", "Curves", "Final per-class IoU", "Confusion matrix", "Sample predictions",
            "Throughput and timing", "Environment", "Config")


@pytest.mark.slow
def test_report_of_a_finished_camvid_run_has_every_part_and_embeds_its_images(tmp_path, camvid_root, capsys) -> None:
    config = load_config(overrides=[
        f"data.spec=camvid:{camvid_root}", "model.weights=null", "model.backbone=resnet18", "model.output_stride=16",
        "model.head_channels=32", "data.crop_size=48", "data.eval_size=48", "data.num_workers=0",
        "train.global_batch_size=4", "train.duration=6ba", "train.eval_interval=3ba", "train.checkpoint_interval=none",
        "train.progress=none", "train.log_images=2", "optimizer.lr=0.02", "train.device=cpu"])
    run_dir = tmp_path / "camvid-run"
    build_trainer(config, run_dir).fit()
    written = (run_dir / "report.html").read_text()  # the end of training wrote it
    (run_dir / "report.html").unlink()
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(run_dir)])
    assert exit_info.value.code == 0 and "report.html" in capsys.readouterr().out
    page = (run_dir / "report.html").read_text()
    for section in SECTIONS:
        assert f"<h2>{section}" in page, section
    assert "camvid-run" in page and "Bicyclist" not in page.split("<h2>Config")[1]  # class names are not the config
    assert page.count("data:image/png;base64,") == 3 + 2  # curves, IoU bars, confusion; 2 samples
    assert not re.search(r'src="(?!data:)', page) and "<link" not in page  # nothing outside the file
    assert page.split("<h2>Environment")[0] == written.split("<h2>Environment")[0]  # the same report again


def test_report_of_a_folder_without_a_summary_is_one_line_exit_2(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "no summary.json" in capsys.readouterr().err
