"""End to end through the real command line: train on CamVid, evaluate the run folder, evaluate ADE20k."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from segrecipes.config import load_config
from segrecipes.engine.checkpoint import atomic_save
from segrecipes.models import build_model

pytestmark = pytest.mark.slow  # every test here starts the command line in a subprocess


def segrecipes(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "segrecipes.cli.main", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=900)


SMALL_CAMVID = [
    "--set", "model.backbone=resnet18", "--set", "model.output_stride=16", "--set", "model.head_channels=64",
    "--set", "data.crop_size=96", "--set", "data.eval_size=96", "--set", "data.num_workers=1",
    "--set", "train.global_batch_size=8", "--set", "optimizer.lr=0.02", "--set", "train.eval_at_start=true",
    "--set", "train.eval_interval=none", "--set", "train.progress=none", "--loss", "dice_ce",
]


def test_camvid_train_learns_and_eval_reproduces_summary(tmp_path, camvid_root) -> None:
    run = tmp_path / "camvid-run"
    result = segrecipes("train", "--data", f"camvid:{camvid_root}", "--duration", "45ba", "--run-dir", str(run),
                        *SMALL_CAMVID)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "final val mIoU" in result.stdout
    summary = json.loads((run / "summary.json").read_text())
    untrained = summary["history"][0]
    assert untrained["step"] == 0
    # an untrained model scores a few percent; 45 steps of 8 images already segment road, sky, buildings
    assert summary["miou"] > untrained["miou"] + 10, (untrained, summary["miou"])
    for key in ("miou", "pixel_acc", "iou", "acc", "dice", "epoch", "step", "elapsed_s", "train_images_per_s"):
        assert key in summary
    assert summary["step"] == 45 and list(summary["iou"])[:2] == ["Sky", "Building"] and len(summary["iou"]) == 11
    for name in ("config.yaml", "metrics.jsonl", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run / name).exists(), name
    assert any((run / "tensorboard").iterdir())

    evaluated = segrecipes("eval", "--checkpoint", str(run), "--json")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    scored = json.loads(evaluated.stdout)
    assert scored["miou"] == summary["miou"] and scored["iou"] == summary["iou"]  # the same names for the same things


def _random_ade20k_checkpoint(path: Path) -> None:
    cfg = load_config(overrides=["model.backbone=resnet18", "model.output_stride=16", "model.head_channels=64",
                                 "data.eval_size=128"])
    model = build_model(cfg.model, 150)
    names = [f"class{i}" for i in range(150)]
    atomic_save({"config": cfg.to_dict(), "model": model.state_dict(),
                 "data": {"num_classes": 150, "class_names": names, "ignore_index": 255}}, path)


@pytest.mark.parametrize("protocol", ["reference", "standard"])
def test_eval_ade20k_samples_with_random_init_model(tmp_path, ade20k_root, protocol) -> None:
    checkpoint = tmp_path / "random.pt"
    _random_ade20k_checkpoint(checkpoint)
    result = segrecipes("eval", "--checkpoint", str(checkpoint), "--data", f"ade20k:{ade20k_root}",
                        "--protocol", protocol, "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads(result.stdout)
    assert len(metrics["iou"]) == 150 and metrics["protocol"] == protocol
    assert metrics["miou"] == pytest.approx(sum(v for v in metrics["iou"].values() if v is not None) /
                                            sum(v is not None for v in metrics["iou"].values()))
    assert metrics["ade_score"] == pytest.approx((metrics["pixel_acc"] + metrics["miou"]) / 2)


def test_quickstart_preset_trains_briefly(tmp_path) -> None:
    run = tmp_path / "quick"
    result = segrecipes("train", "--recipe", "quickstart", "--duration", "2ba", "--run-dir", str(run),
                        "--set", "data.synthetic_train_size=32", "--set", "data.synthetic_val_size=8",
                        "--set", "train.progress=none")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "untrained model: val mIoU" in result.stdout and "final val mIoU" in result.stdout
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["clock"]["step"] == 2
