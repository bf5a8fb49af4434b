"""``segrecipes predict``: the standard protocol, the files it writes, exported models, and bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.io import decode_image, write_jpeg, write_png

from segrecipes.cli.main import main
from segrecipes.deploy import predict_labels
from segrecipes.evaluation.options import InferenceOptions

SIZES = {"wide.png": (40, 56), "tall.jpg": (45, 33)}  # name -> (height, width)


def _cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def _write_images(folder: Path) -> Path:
    folder.mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    for name, (height, width) in SIZES.items():
        image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
        (write_png if name.endswith(".png") else write_jpeg)(image, str(folder / name))
    return folder


def _labels(folder: Path) -> dict[str, torch.Tensor]:
    return {path.stem: decode_image(str(path)) for path in sorted(folder.glob("*.png")) if "_overlay" not in path.stem}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_images(tmp_path_factory.mktemp("predict") / "images")


@pytest.fixture(scope="module")
def checkpoint_out(tiny_run: Path, images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Predictions of the training checkpoint, with overlays (the reference for the other tests)."""
    out = tmp_path_factory.mktemp("checkpoint_out")
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--checkpoint", str(tiny_run), str(images), "--out", str(out), "--device", "cpu"])
    assert exit_info.value.code == 0
    return out


class _Stripes(nn.Module):
    """Records the input sizes it is shown and predicts three vertical stripes (classes 0, 1, 2
    from left to right) across whatever it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, ...]] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(images.shape))
        batch, _, height, width = images.shape
        stripe = torch.arange(width) * 3 // width
        return 10.0 * nn.functional.one_hot(stripe, 3).T[None, :, None, :].expand(batch, 3, height, width).float()


def test_deploy_predict_resizes_short_side_then_upsamples_to_the_original() -> None:
    model = _Stripes()
    image = torch.zeros(3, 50, 70, dtype=torch.uint8)
    labels = predict_labels(model, image, InferenceOptions(size=32), 3, torch.device("cpu"))
    # short side 50 -> 32, long side 70 * 32 / 50 = 44.8 -> 45; the labels come back at 50 x 70
    assert model.seen == [(1, 3, 32, 45)]
    assert labels.shape == (50, 70)
    # stripe borders at 1/3 and 2/3 of the width (23.3 and 46.7 px), blurred by a pixel or two
    assert (labels[:, :21] == 0).all() and (labels[:, 26:44] == 1).all() and (labels[:, 49:] == 2).all()

    model.seen.clear()
    predict_labels(model, torch.zeros(3, 40, 400, dtype=torch.uint8),
                   InferenceOptions(size=32, max_long_side=128, tta="flip"), 3, torch.device("cpu"))
    # the long side caps the scale: min(32 / 40, 128 / 400) = 0.32 -> 13 x 128, once plain, once mirrored
    assert model.seen == [(1, 3, 13, 128)] * 2


@pytest.mark.slow
def test_deploy_predict_writes_labels_at_original_size_and_overlays(checkpoint_out: Path, tiny_model) -> None:
    labels = _labels(checkpoint_out)
    assert labels.keys() == {"wide", "tall"}
    for name, (height, width) in SIZES.items():
        label = labels[Path(name).stem]
        assert label.shape == (1, height, width) and label.dtype == torch.uint8
        assert int(label.max()) < tiny_model.num_classes
        overlay = decode_image(str(checkpoint_out / f"{Path(name).stem}_overlay.png"))
        assert overlay.shape[0] == 3 and overlay.shape[1] >= height and overlay.shape[2] > width  # legend on the right


@pytest.mark.slow
def test_deploy_predict_ade20k_submission_is_labels_plus_one(tiny_run, images, checkpoint_out, tmp_path, capsys) -> None:
    code, _, _ = _cli(capsys, "predict", "--checkpoint", tiny_run, images, "--out", tmp_path,
                      "--ade20k-submission", "--no-overlay")
    assert code == 0
    assert not list(tmp_path.glob("*_overlay.png"))
    reference = _labels(checkpoint_out)
    submission = _labels(tmp_path)
    for stem, label in reference.items():
        assert torch.equal(submission[stem], label + 1)
        assert 1 <= int(submission[stem].min()) and int(submission[stem].max()) <= 1 + int(label.max())


@pytest.mark.slow
@pytest.mark.parametrize("format_name", ["onnx", "torchscript", "safetensors"])
def test_deploy_predict_with_exported_model_equals_checkpoint(
    format_name, exported, images, checkpoint_out, tmp_path, capsys
) -> None:
    code, _, _ = _cli(capsys, "predict", "--checkpoint", exported[format_name], images, "--out", tmp_path, "--no-overlay")
    assert code == 0
    expected = _labels(checkpoint_out)
    actual = _labels(tmp_path)
    assert actual.keys() == expected.keys()
    for stem in expected:
        assert torch.equal(actual[stem], expected[stem]), stem


@pytest.mark.slow
def test_deploy_predict_real_camvid_image(camvid_root: Path, tiny_run: Path, tmp_path: Path, capsys) -> None:
    image = sorted((camvid_root / "val").glob("*.jpg"))[0]
    code, _, _ = _cli(capsys, "predict", "--checkpoint", tiny_run, image, "--out", tmp_path, "--no-overlay")
    assert code == 0
    assert decode_image(str(tmp_path / f"{image.stem}.png")).shape == (1, 360, 480)


@pytest.mark.slow
@pytest.mark.parametrize(
    "case", ["missing", "unreadable", "empty-folder", "same-stem", "bad-tta"]
)
def test_deploy_predict_bad_input_is_one_line_and_exit_2(case, tiny_run, tmp_path, capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    options: list[str | Path] = []
    if case == "missing":
        inputs, expected = [tmp_path / "nope.jpg"], "nope.jpg: input image or folder not found"
    elif case == "unreadable":
        (folder / "broken.jpg").write_text("not an image")
        inputs, expected = [folder / "broken.jpg"], "broken.jpg: cannot decode"
    elif case == "empty-folder":
        (folder / "notes.txt").write_text("no images here")
        inputs, expected = [folder], "in: no images"
    elif case == "same-stem":
        _write_images(folder / "a")
        _write_images(folder / "b")
        inputs, expected = [folder / "a", folder / "b"], "would overwrite that of"
    else:
        inputs, expected, options = [folder], "eval.tta", ["--tta", "sideways"]
    code, _, err = _cli(capsys, "predict", "--checkpoint", tiny_run, *inputs, "--out", tmp_path / "out", *options)
    assert code == 2
    assert err.startswith("error: ") and expected in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_deploy_predict_process_exit_code(tiny_run: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "segrecipes.cli.main", "predict", "--checkpoint", str(tiny_run),
         str(tmp_path / "missing.png"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'missing.png'}: input image or folder not found"
