"""Config validation: durations, overrides, clear one-line errors, and the presets equal SPEC §2."""

from __future__ import annotations


import pytest

from segrecipes.config import ConfigError, Duration, RunConfig, available_recipes, build_config, load_config, \
    parse_override


@pytest.mark.parametrize(
    ("text", "value", "unit"),
    [("128ep", 128, "ep"), ("1000ba", 1000, "ba"), ("39min", 2340, "s"), ("2h", 7200, "s"), ("90s", 90, "s"),
     ("0.5ep", 0.5, "ep")],
)
def test_duration_parse(text: str, value: float, unit: str) -> None:
    duration = Duration.parse(text)
    assert (duration.value, duration.unit) == (value, unit)


@pytest.mark.parametrize("text", ["12", "ep", "-3ep", "1.5ba", "0ep", "3 weeks"])
def test_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        Duration.parse(text)


def test_override_parses_yaml_values() -> None:
    assert parse_override("optimizer.lr=0.04") == {"optimizer": {"lr": 0.04}}
    assert parse_override("data.scale_range=[0.5, 1.5]") == {"data": {"scale_range": [0.5, 1.5]}}
    cfg = load_config("baseline", overrides=["optimizer.lr=0.04", "train.duration=40ep"])
    assert cfg.optimizer.lr == 0.04 and str(cfg.train.duration) == "40ep"


def test_unknown_key_suggests_closest() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("baseline", overrides=["optimizer.lrr=0.1"])
    message = str(info.value)
    assert "optimizer.lrr" in message and "did you mean 'optimizer.lr'" in message and "\n" not in message


def test_unknown_section_suggests_closest() -> None:
    with pytest.raises(ConfigError, match="did you mean 'optimizer'"):
        load_config(overrides=["optimiser.lr=0.1"])


def test_wrong_type_names_key_and_value() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["train.global_batch_size=lots"])
    assert "train.global_batch_size" in str(info.value) and "'lots'" in str(info.value)


def test_sam_interval_zero_refused() -> None:
    with pytest.raises(ConfigError, match="sam.interval"):
        load_config(overrides=["sam.interval=0"])


def test_unknown_recipe_and_method() -> None:
    with pytest.raises(ConfigError, match="did you mean 'medium'"):
        load_config("meduim")
    with pytest.raises(ConfigError, match="unknown method 'swa'"):
        load_config(methods=["swa"])


def test_config_file_errors_name_the_file(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  duraton: 3ep\n")
    with pytest.raises(ConfigError, match=f"{bad}: unknown key 'train.duraton'.*'train.duration'"):
        load_config(config_file=bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [\n")
    with pytest.raises(ConfigError, match="broken.yaml.*not valid YAML"):
        load_config(config_file=broken)


def test_methods_switches_enable_sections() -> None:
    cfg = load_config(methods=["ema", "sam", "dice"])
    assert cfg.enabled_methods() == ["ema", "sam"]
    # "dice" is what the first release called the reference loss: a loss setting now, not a method
    assert (cfg.loss.name, cfg.loss.ce_weight, cfg.loss.dice_weight) == ("dice_ce", None, None)


def test_durations_are_written_as_text_and_read_back() -> None:
    cfg = load_config("mild", overrides=["schedule.warmup=100ba", "train.eval_interval=none"])
    dumped = cfg.to_dict()
    assert dumped["train"]["duration"] == "25ep" and dumped["schedule"]["warmup"] == "100ba"
    assert dumped["train"]["eval_interval"] is None and dumped["train"]["checkpoint_interval"] == "1ep"
    assert load_config(overrides=[]).model_validate(dumped) == cfg


def test_presets_listed_with_purpose() -> None:
    recipes = available_recipes()
    assert {"baseline-unoptimized", "baseline", "mild", "medium", "hot"} <= set(recipes)
    assert all(purpose for purpose in recipes.values())


COMMON = {
    ("model", "name"): "deeplabv3plus", ("model", "backbone"): "resnet101", ("model", "output_stride"): 8,
    ("model", "weights"): "IMAGENET1K_V2", ("optimizer", "name"): "sgdw", ("optimizer", "lr"): 0.08,
    ("optimizer", "momentum"): 0.9, ("optimizer", "weight_decay"): 5e-5, ("train", "global_batch_size"): 128,
    ("train", "precision"): "fp16", ("loss", "name"): "dice_ce", ("loss", "ce_weight"): None,
    ("data", "crop_size"): 512, ("data", "scale_range"): (0.5, 2.0), ("data", "cat_max_ratio"): 0.75,
    ("data", "crop_retries"): 10, ("data", "flip_prob"): 0.5, ("eval", "size"): 512,
    ("model", "dropout"): 0.1, ("schedule", "warmup"): None, ("train", "sync_bn"): False,
}
# SPEC §2 table: (epochs, schedule, enabled methods, method settings)
TABLE = {
    "baseline": ("128ep", "cosine", [], {}),
    "mild": ("25ep", "constant", ["ema", "channels_last"],
             {("ema", "half_life"): Duration(1000, "ba"), ("ema", "update_interval"): Duration(10, "ba")}),
    "medium": ("90ep", "constant", ["ema", "channels_last", "mixup", "sam"],
               {("ema", "half_life"): Duration(1000, "ba"), ("ema", "update_interval"): Duration(10, "ba"), ("sam", "rho"): 0.3,
                ("sam", "interval"): Duration(2, "ba"), ("mixup", "alpha"): 0.2}),
    "hot": ("256ep", "cosine", ["ema", "channels_last", "mixup", "sam"],
            {("ema", "half_life"): Duration(2000, "ba"), ("ema", "update_interval"): Duration(1, "ba"), ("sam", "rho"): 0.3,
             ("sam", "interval"): Duration(1, "ba"), ("mixup", "alpha"): 0.5}),
}


@pytest.mark.parametrize("name", sorted(TABLE))
def test_presets_equal_spec(name: str) -> None:
    cfg = load_config(name, overrides=["recipe.transfer=none"])  # the constants as the preset writes them
    duration, schedule, methods, settings = TABLE[name]
    assert str(cfg.train.duration) == duration
    assert cfg.schedule.name == schedule and cfg.schedule.final_lr_ratio == 0.0
    assert sorted(cfg.enabled_methods()) == sorted(methods)
    for (section, key), expected in {**COMMON, **settings}.items():
        assert getattr(getattr(cfg, section), key) == expected, f"{name}: {section}.{key}"


def test_unoptimized_baseline_equals_spec() -> None:
    cfg = load_config("baseline-unoptimized")
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.weight_decay) == ("sgd", 0.01, 5e-4)
    assert (cfg.schedule.name, cfg.schedule.power) == ("poly", 0.9)
    assert (cfg.train.global_batch_size, str(cfg.train.duration), cfg.train.sync_bn) == (16, "127ep", True)
    assert cfg.model.weights == "IMAGENET1K_V1" and cfg.enabled_methods() == [] and cfg.loss.name == "ce"


def test_each_section_is_its_components_own_settings_class() -> None:
    """One definition per concept: the config's sections are the classes the components take."""
    from segrecipes.data.settings import DataSettings
    from segrecipes.engine.settings import TrainSettings
    from segrecipes.evaluation.options import InferenceOptions
    from segrecipes.models.settings import ModelSettings

    fields = RunConfig.model_fields
    assert (fields["train"].annotation, fields["eval"].annotation) == (TrainSettings, InferenceOptions)
    assert (fields["data"].annotation, fields["model"].annotation) == (DataSettings, ModelSettings)
    assert RunConfig().train == TrainSettings() and RunConfig().eval == InferenceOptions()


def test_data_eval_size_of_earlier_releases_is_the_protocol_size() -> None:
    saved = {"data": {"spec": "synthetic", "eval_size": 96}, "train": {"duration": "4ba"}}  # a 0.2 run's config
    assert build_config(saved).eval.size == 96
    assert load_config("mild", overrides=["data.eval_size=96"]).eval.size == 96  # the old spelling still works
    assert load_config("mild", overrides=["data.eval_size=96", "eval.size=64"]).eval.size == 64  # the last wins
    assert load_config("mild", overrides=["eval.size=64", "data.eval_size=96"]).eval.size == 96
    assert "eval_size" not in load_config("mild").to_dict()["data"]
