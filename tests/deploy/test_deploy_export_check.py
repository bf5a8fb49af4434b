"""The export check in mIoU: numbers against a hand computation, the CLI on a tiny run (numbers printed and
stored in the export), and a deliberately perturbed export failing it with exit 1."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers.cli import run_cli

from segrecipes.deploy.export import EXPORT_FORMATS, ExportFormat
from segrecipes.deploy.export_check import check_export
from segrecipes.deploy.metadata import EXPORT_CHECK_KEY
from segrecipes.deploy.safetensors_format import read_safetensors_metadata, write_safetensors
from segrecipes.deploy.trained_model import TrainedModel
from segrecipes.evaluation.options import InferenceOptions


class _Threshold(nn.Module):
    """Class 1 where the red channel is bright, in columns below ``columns`` only; class 0 elsewhere."""

    def __init__(self, columns: int) -> None:
        super().__init__()
        self.columns = columns

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        labels = (images[:, 0] > 0).long()
        labels[..., self.columns:] = 0
        return F.one_hot(labels, 2).permute(0, 3, 1, 2).float()


def _sample() -> tuple[torch.Tensor, torch.Tensor]:
    mask = torch.tensor([[1, 1, 0, 0]] * 4)
    image = (mask * 255).to(torch.uint8).expand(3, 4, 4).clone()
    return image, mask


def test_check_numbers_by_hand() -> None:
    # ground truth: class 1 in columns 0-1. PyTorch is exact; the "export" finds class 1 in column 0 only.
    # export: IoU(1) = 4 / 8 = 50, IoU(0) = 8 / 12 = 66.67 -> mIoU 58.33; 4 of 16 pixels changed class.
    options = InferenceOptions(protocol="standard", size=4)
    check = check_export(_Threshold(4), _Threshold(1), [_sample()], options, num_classes=2, ignore_index=255,
                         images=5, data_name="hand", max_drop=0.5)
    assert check.images == 1
    assert check.reference_miou == pytest.approx(100.0)
    assert check.exported_miou == pytest.approx((50 + 200 / 3) / 2)
    assert check.drop == pytest.approx(100 - (50 + 200 / 3) / 2)
    assert check.changed_pixels == pytest.approx(0.25)
    assert check.reference_images_per_s > 0 and check.exported_images_per_s > 0
    assert not check.passed
    stored = json.loads(check.metadata()[EXPORT_CHECK_KEY])
    assert stored["miou_drop"] == pytest.approx(check.drop) and stored["passed"] is False
    assert "25.000% of pixels changed class" in "\n".join(check.lines())



@pytest.mark.slow
def test_check_passes_for_onnx_and_lands_in_its_metadata(tiny_run, tmp_path, capsys) -> None:
    out = tmp_path / "checked.onnx"
    code, stdout, err = run_cli(capsys, "export", "--checkpoint", tiny_run, "--format", "onnx", "--out", out,
                             "--check-data", "synthetic", "--check-images", "2")
    assert code == 0, err
    assert "mIoU check on 2 images of synthetic (reference protocol):" in stdout
    assert "difference +0.00 mIoU (allowed drop 0.05)" in stdout
    props = {entry.key: entry.value for entry in onnx.load(str(out)).metadata_props}
    stored = json.loads(props[EXPORT_CHECK_KEY])
    assert stored["images"] == 2 and stored["passed"] is True and stored["max_drop"] == 0.05
    assert stored["exported_miou"] == pytest.approx(stored["reference_miou"], abs=0.05)


def _perturbed_writer(trained: TrainedModel, path: Path) -> None:
    """The safetensors export with the classifier's output channels rolled by one: every class predicted
    as the next one (and its logits off by far more than the tolerance)."""
    model = trained.model
    classifier = [module for module in model.modules() if isinstance(module, nn.Conv2d)][-1]
    with torch.no_grad():
        classifier.weight.copy_(classifier.weight.roll(1, dims=0))
        classifier.bias.copy_(classifier.bias.roll(1, dims=0))
    try:
        write_safetensors(trained, path)
    finally:
        with torch.no_grad():
            classifier.weight.copy_(classifier.weight.roll(-1, dims=0))
            classifier.bias.copy_(classifier.bias.roll(-1, dims=0))


@pytest.mark.slow
def test_a_perturbed_export_fails_the_check_with_exit_1(tiny_run, tmp_path, capsys, monkeypatch) -> None:
    honest = EXPORT_FORMATS["safetensors"]
    monkeypatch.setitem(EXPORT_FORMATS, "safetensors", ExportFormat(honest.suffix, _perturbed_writer,
                                                                    honest.add_metadata))
    out = tmp_path / "broken.safetensors"
    code, stdout, err = run_cli(capsys, "export", "--checkpoint", tiny_run, "--format", "safetensors", "--out", out,
                             "--check-data", "synthetic", "--check-images", "2")
    assert code == 1
    assert "ABOVE the tolerance" in stdout and "mIoU check on 2 images" in stdout
    assert err.startswith(f"error: {out}: the export loses ") and "> --max-miou-drop 0.05" in err
    assert err.count("\n") == 1
    stored = json.loads(read_safetensors_metadata(out)[EXPORT_CHECK_KEY])  # kept, with the numbers
    assert stored["passed"] is False and stored["miou_drop"] > 0.05


@pytest.mark.slow
def test_check_data_with_other_classes_is_refused_before_exporting(tiny_run, tmp_path, capsys) -> None:
    code, _, err = run_cli(capsys, "export", "--checkpoint", tiny_run, "--format", "onnx", "--out", tmp_path / "m.onnx",
                        "--check-data", "camvid:/nonexistent/camvid")
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "m.onnx").exists()
