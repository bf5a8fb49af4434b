"""Recipes carried over to other runs: on the reference run (ADE20k, 20,210 images, global batch 128)
every preset resolves to the reference's own numbers (SPEC §2); on another dataset and batch they
scale by the stated rules, hand-computed here."""

from __future__ import annotations

import math

import pytest
import yaml

from segrecipes.cli.main import main
from segrecipes.config import ConfigError, Duration, load_config, transferred
from segrecipes.engine.clock import Clock
from segrecipes.methods import EMA, SAM
from segrecipes.run import build_methods, run_clock

ADE20K_TRAIN = 20210
CAMVID_TRAIN = 367
# SPEC §2: (epochs, EMA half-life and update interval in batches of 128, SAM interval)
REFERENCE = {
    "baseline": (128, None, None),
    "mild": (25, (1000, 10), None),
    "medium": (90, (1000, 10), 2),
    "hot": (256, (2000, 1), 1),
}


def _methods(config, train_size: int) -> tuple[Clock, dict[str, object]]:
    clock = run_clock(config, train_size)
    return clock, {method.name: method for method in build_methods(config, 150, 255, clock)}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_every_preset_resolves_to_the_reference_numbers_on_ade20k_at_batch_128(name: str) -> None:
    config = load_config(name)
    assert config.recipe.transfer == "scaled"
    epochs, ema, sam = REFERENCE[name]
    clock, methods = _methods(config, ADE20K_TRAIN)
    assert clock.steps_per_epoch == 157 and clock.total_steps == epochs * 157
    assert config.optimizer.lr == 0.08 and config.train.global_batch_size == 128
    if ema is not None:
        half_life, interval = ema
        average = methods["ema"]
        assert isinstance(average, EMA) and average.update_interval == interval
        assert average.smoothing == 2.0 ** (-interval / half_life)  # exactly: both resolve to whole batches
    if sam is not None:
        assert isinstance(methods["sam"], SAM) and methods["sam"].interval == sam


def test_mild_on_camvid_at_batch_8_scales_lr_and_time_constants() -> None:
    config = load_config("mild", overrides=["train.global_batch_size=8"])
    assert config.optimizer.lr == pytest.approx(0.08 * 8 / 128)  # linear: 0.005
    clock, methods = _methods(config, CAMVID_TRAIN)
    assert clock.steps_per_epoch == 45 and clock.total_steps == 25 * 45
    # half-life 1000 of 25 * 157 = 3925 reference steps -> the same share of 1125 steps: 286.6 -> 287
    average = methods["ema"]
    assert average.update_interval == round(10 / 3925 * 1125)  # 2.87 -> 3
    assert average.smoothing == pytest.approx(2.0 ** (-3 / 287))


def test_a_shorter_budget_shortens_the_half_life_in_dur_but_not_in_epochs() -> None:
    short = ["train.global_batch_size=8", "train.duration=5ep"]
    _, dur = _methods(load_config("mild", overrides=short), CAMVID_TRAIN)
    _, epochs = _methods(load_config("mild", overrides=[*short, "recipe.time_unit=ep"]), CAMVID_TRAIN)
    assert dur["ema"].smoothing == pytest.approx(2.0 ** (-1 / round(1000 / 3925 * 225)))  # 57 batches, every 1
    assert epochs["ema"].smoothing == pytest.approx(2.0 ** (-3 / round(1000 / 157 * 45)))  # 6.37ep = 287 batches


def test_transfer_none_keeps_the_literal_constants() -> None:
    config = load_config("medium", overrides=["train.global_batch_size=8", "recipe.transfer=none"])
    assert config.optimizer.lr == 0.08
    assert (config.ema.half_life, config.ema.update_interval) == (Duration(1000, "ba"), Duration(10, "ba"))
    _, methods = _methods(config, CAMVID_TRAIN)
    assert methods["ema"].smoothing == 2.0 ** (-10 / 1000) and methods["sam"].interval == 2


def test_values_the_user_sets_are_taken_as_written() -> None:
    config = load_config("mild", overrides=["train.global_batch_size=8", "optimizer.lr=0.02", "ema.half_life=300"])
    assert config.optimizer.lr == 0.02
    assert config.ema.half_life == Duration(300, "ba")
    assert config.ema.update_interval.unit == "dur"  # not given: still carried over


def test_sqrt_scaling_and_no_scaling() -> None:
    assert load_config("mild", overrides=["train.global_batch_size=8", "recipe.lr_scaling=sqrt"]).optimizer.lr == \
        pytest.approx(0.08 * math.sqrt(8 / 128))
    assert load_config("mild", overrides=["train.global_batch_size=8", "recipe.lr_scaling=none"]).optimizer.lr == 0.08


def test_samples_unit_keeps_the_number_of_images() -> None:
    config = load_config("mild", overrides=["train.global_batch_size=8", "recipe.time_unit=sp"])
    assert config.ema.half_life == Duration(128_000, "sp")
    _, methods = _methods(config, CAMVID_TRAIN)
    assert methods["ema"].smoothing == pytest.approx(2.0 ** (-160 / 16_000))  # 1280 sp = 160 ba, 128000 sp = 16000


def test_a_preset_warmup_is_carried_over_as_a_share_of_the_run_and_a_user_one_is_not() -> None:
    # a preset with a 2-epoch warmup of the reference's 25: 2 * 157 / (25 * 157) = 0.08 of the run
    preset = load_config("mild", overrides=["recipe.transfer=none", "schedule.warmup=2ep"])
    preset = preset.model_copy(update={"recipe": preset.recipe.model_copy(update={"transfer": "scaled"})})
    assert transferred(preset, user={}).schedule.warmup == Duration(0.08, "dur")
    assert transferred(preset, user={"schedule": {"warmup": "2ep"}}).schedule.warmup == Duration(2, "ep")
    # a wall-clock run keeps the warmup as a share of its budget (the schedule counts time)
    timed = preset.model_copy(update={"train": preset.train.model_copy(update={"duration": Duration(600, "s")})})
    assert transferred(timed, user={}).schedule.warmup == Duration(0.08, "dur")
    assert Clock(Duration(600, "s"), 45, 8).fraction_of_run(Duration(0.08, "dur")) == pytest.approx(0.08)


def test_scaled_transfer_without_a_reference_is_refused() -> None:
    with pytest.raises(ConfigError, match="recipe.reference_train_size"):
        load_config(overrides=["recipe.transfer=scaled"])


@pytest.mark.parametrize(("text", "expected"), [
    ("128000sp", Duration(128000, "sp")), ("0.25dur", Duration(0.25, "dur")), ("2.5e-05dur", Duration(2.5e-5, "dur")),
])
def test_new_units_parse(text: str, expected: Duration) -> None:
    assert Duration.parse(text) == expected and Duration.parse(str(expected)) == expected


def test_a_bare_number_is_batches_only_for_method_constants() -> None:
    assert load_config(overrides=["ema.half_life=50", "sam.interval=2"]).ema.half_life == Duration(50, "ba")
    assert load_config(overrides=["ema.half_life=50.0"]).ema.half_life == Duration(50, "ba")
    with pytest.raises(ConfigError, match="train.duration"):
        load_config(overrides=["train.duration=50"])
    with pytest.raises(ConfigError, match="train.duration"):
        load_config(overrides=["train.duration=0.5dur"])
    with pytest.raises(ConfigError, match="samples must be a whole number"):
        Duration.parse("10.5sp")


def test_clock_resolves_every_unit() -> None:
    clock = Clock(Duration(10, "ep"), steps_per_epoch=45, samples_per_step=8)
    assert clock.resolve(Duration(2, "ep")) == Duration(90, "ba")
    assert clock.resolve(Duration(100, "sp")) == Duration(12, "ba")  # 12.5 -> 12 (round half to even)
    assert clock.resolve(Duration(0.1, "dur")) == Duration(45, "ba")
    assert clock.resolve(Duration(1e-6, "dur")) == Duration(1, "ba")  # at least one step
    assert clock.fraction_of_run(Duration(0.25, "dur")) == 112 / 450  # 112.5 whole steps -> 112
    timed = Clock(Duration(600, "s"), steps_per_epoch=45, samples_per_step=8)
    assert timed.resolve(Duration(0.25, "dur")) == Duration(150, "s")
    assert timed.fraction_of_run(Duration(0.25, "dur")) == pytest.approx(0.25)
    with pytest.raises(ConfigError, match="fraction of the run"):
        Clock(Duration(0.5, "dur"), 45, 8)


@pytest.mark.parametrize("sets", [["ema.half_life=10min"], ["ema.update_interval=0.1dur", "train.duration=10min"],
                                  ["sam.interval=30s", "sam.enabled=true"]])
def test_a_wall_clock_method_constant_is_refused_with_its_key_before_the_run(sets: list[str]) -> None:
    key = sets[0].split("=")[0]
    with pytest.raises(ConfigError, match=rf"{key}: .* (is wall-clock time|is a share of a wall-clock run)"):
        load_config(overrides=["ema.enabled=true", *sets])


def test_recipes_show_prints_yaml_then_each_constant_written_carried_over_and_in_batches(capsys, camvid_root) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["recipes", "show", "mild", "--data", f"camvid:{camvid_root}", "--set", "train.global_batch_size=8",
              "--set", "train.duration=5ep"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert yaml.safe_load(out)["optimizer"]["lr"] == pytest.approx(0.005)  # still one YAML document
    rows = {line.split()[1]: line.split()[2:] for line in out.splitlines() if line.startswith("#   ")}
    assert "367 training images (counted)" in out
    assert rows["optimizer.lr"] == ["0.08", "0.005", "-"]
    assert rows["train.duration"] == ["5ep", "5ep", "225ba"]
    assert rows["ema.half_life"] == ["1000ba", "0.254777dur", "57ba"]  # 1000 / 3925 of 225 steps
    assert rows["ema.update_interval"] == ["10ba", "0.00254777dur", "1ba"]


def test_recipes_show_without_the_dataset_uses_the_reference_count(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["recipes", "show", "medium", "--data", "ade20k:/nonexistent/ADEChallengeData2016"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "20210 training images (ade20k:/nonexistent/ADEChallengeData2016 not found here" in out
    rows = {line.split()[1]: line.split()[2:] for line in out.splitlines() if line.startswith("#   ")}
    assert rows["ema.half_life"][-1] == "1000ba" and rows["sam.interval"] == ["2ba", "2ba", "2ba"]
    assert rows["train.duration"][-1] == f"{90 * 157}ba"


def test_a_wall_clock_budget_carries_time_constants_over_in_epochs() -> None:
    config = load_config("mild", overrides=["train.duration=39min"])
    assert config.ema.half_life == Duration(float(f"{1000 / 157:.6g}"), "ep")
    _, methods = _methods(config, ADE20K_TRAIN)
    assert methods["ema"].smoothing == 2.0 ** (-10 / 1000)




def test_a_config_file_naming_its_recipe_the_old_way_keeps_the_presets_transfer(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("recipe: mild\ntrain:\n  global_batch_size: 8\n")
    config = load_config("mild", config_file=path)
    assert config.recipe.transfer == "scaled" and config.recipe.reference_batch_size == 128
    assert config.optimizer.lr == pytest.approx(0.005)


def test_carried_over_runs_use_the_ema_warmup_and_literal_ones_do_not() -> None:
    assert load_config("mild").ema.warmup is True
    assert load_config("mild", overrides=["recipe.transfer=none"]).ema.warmup is False
    assert load_config("mild", overrides=["ema.warmup=false"]).ema.warmup is False
    assert load_config("baseline").ema.warmup is False  # no EMA, nothing switched on
