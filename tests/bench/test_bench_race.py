"""``segrecipes bench race``: time to target on hand-made curves, scaling, summaries, and a tiny real race."""

from __future__ import annotations

import csv
import json
import math

import pytest
from helpers.tiny import TINY

from segrecipes.bench.entries import CurvePoint, Entry, parse_entries, read_curve
from segrecipes.bench.race.plot import mean_curve
from segrecipes.bench.race.run import RaceRun, evaluation_data, race_configs, run_race, scale_duration, \
    shared_eval_interval
from segrecipes.bench.race.score import miou_at, score, summarize, time_to_target
from segrecipes.cli.main import main
from segrecipes.config import ConfigError, Duration
from segrecipes.data.spec import build_raw_dataset

# step, images seen, wall time (s), mIoU: rises, dips, rises again
CURVE = [
    CurvePoint(10, 80, 12.0, 20.0),
    CurvePoint(20, 160, 25.0, 41.5),
    CurvePoint(30, 240, 37.0, 38.0),
    CurvePoint(40, 320, 50.0, 45.0),
]


@pytest.mark.parametrize(
    ("target", "expected"),
    [(10.0, CURVE[0]), (20.0, CURVE[0]), (40.0, CURVE[1]), (41.5, CURVE[1]), (42.0, CURVE[3]), (45.1, None)],
)
def test_time_to_target_is_the_first_evaluation_at_or_above_it(target, expected) -> None:
    assert time_to_target(CURVE, target) == expected
    assert time_to_target(list(reversed(CURVE)), target) == expected  # order of logging does not matter


def test_time_to_target_of_an_empty_curve_is_none() -> None:
    assert time_to_target([], 1.0) is None


@pytest.mark.parametrize(("seconds", "expected"), [(5.0, None), (12.0, 20.0), (36.9, 41.5), (37.0, 38.0), (99, 45.0)])
def test_miou_at_a_wall_time_is_the_last_evaluation_no_later(seconds, expected) -> None:
    assert miou_at(CURVE, seconds) == expected


def test_entries_with_labels_and_overrides() -> None:
    entries = parse_entries("baseline, mild-literal=mild[recipe.transfer=none ema.warmup=true],medium[sam.rho=0.1]")
    assert entries == [
        Entry("baseline", "baseline"),
        Entry("mild-literal", "mild", ("recipe.transfer=none", "ema.warmup=true")),
        Entry("medium-sam.rho=0.1", "medium", ("sam.rho=0.1",)),  # a default label fit for a folder name
    ]
    for bad in ("mild[recipe.transfer=none", "a=mild,a=medium", "mild,,medium", "x=y=mild", "a/b=mild"):
        with pytest.raises(ConfigError, match="--recipes"):
            parse_entries(bad)


def _curve_run(label: str, seed: int, mious: list[float], step_s: float) -> RaceRun:
    curve = [CurvePoint(10 * i, 80 * i, step_s * i, miou) for i, miou in enumerate(mious, start=1)]
    return RaceRun(label, seed, "", curve, mious[-1], 1.0, step_s * len(mious))


def test_target_baseline_is_the_first_entrys_mean_final_miou_and_reference_time_its_mean_wall_time() -> None:
    runs = [_curve_run("baseline", 0, [10, 30, 40], 10.0), _curve_run("mild", 0, [20, 44], 5.0),
            _curve_run("baseline", 1, [12, 28, 44], 12.0), _curve_run("mild", 1, [25, 35], 5.0)]
    assert score(runs, "baseline") == pytest.approx(42.0)  # (40 + 44) / 2
    # reference time: baseline wall times 30 s and 36 s -> 33 s
    assert [run.miou_at_reference_time for run in runs] == [40, 44, 28, 35]
    assert [run.reached.elapsed_s if run.reached else None for run in runs] == [None, 10.0, 36.0, None]
    baseline, mild = summarize(runs)
    assert baseline.miou_at_reference_time.mean == pytest.approx(34.0)
    assert mild.miou_at_reference_time.mean == pytest.approx(39.5)
    assert score(runs, 30.0) == 30.0 and runs[0].reached.elapsed_s == 20.0


def test_mean_curve_averages_seeds_point_by_point() -> None:
    times, means, stds = mean_curve([_curve_run("a", 0, [10, 30, 40], 10.0), _curve_run("a", 1, [20, 40], 12.0)])
    assert times == [11.0, 22.0] and means == [15.0, 35.0]
    assert stds == pytest.approx([math.sqrt(50), math.sqrt(50)])


def test_scale_duration_keeps_units_and_whole_batches() -> None:
    assert scale_duration(Duration.parse("128ep"), 0.1) == Duration(value=12.8, unit="ep")
    assert scale_duration(Duration.parse("39min"), 0.5) == Duration(value=1170, unit="s")
    assert scale_duration(Duration.parse("1000ba"), 0.0015) == Duration(value=2, unit="ba")
    assert scale_duration(Duration.parse("10ba"), 0.01) == Duration(value=1, unit="ba")
    with pytest.raises(ConfigError, match="scale"):
        scale_duration(Duration.parse("10ba"), 0)


def test_shared_eval_interval_splits_the_shortest_duration() -> None:
    durations = [Duration.parse("12.8ep"), Duration.parse("2.5ep"), Duration.parse("9ep")]
    assert shared_eval_interval(durations, 10) == Duration(value=0.25, unit="ep")
    assert shared_eval_interval([Duration.parse("95ba"), Duration.parse("400ba")], 10) == Duration(value=10, unit="ba")
    with pytest.raises(ConfigError, match="eval-every"):
        shared_eval_interval([Duration.parse("2ep"), Duration.parse("100ba")], 10)


def _run(recipe: str, seed: int, reach_s: float | None, final: float, speed: float) -> RaceRun:
    reached = CurvePoint(5, int(reach_s * 10), reach_s, 50.0) if reach_s is not None else None
    return RaceRun(recipe, seed, f"runs/{recipe}-{seed}", [], final, speed, 100.0, reached)


def test_summary_is_mean_and_sample_std_over_seeds_with_speedup_against_the_first_recipe() -> None:
    runs = [
        _run("baseline", 0, 100.0, 40.0, 10.0), _run("mild", 0, 30.0, 41.0, 12.0),
        _run("baseline", 1, 140.0, 42.0, 14.0), _run("mild", 1, None, 39.0, 12.0),
    ]
    baseline, mild = summarize(runs)
    assert (baseline.recipe, baseline.runs, baseline.reached) == ("baseline", 2, 2)
    assert baseline.time_to_target_s.mean == pytest.approx(120.0)
    assert baseline.time_to_target_s.std == pytest.approx(math.sqrt(((100 - 120) ** 2 + (140 - 120) ** 2) / 1))
    assert baseline.images_to_target.mean == pytest.approx(1200)
    assert baseline.final_miou.mean == pytest.approx(41.0) and baseline.images_per_s.mean == pytest.approx(12.0)
    assert baseline.speedup == pytest.approx(1.0)
    # mild reached once: time to target over that seed only; mIoU over both
    assert (mild.reached, mild.runs) == (1, 2)
    assert mild.time_to_target_s.mean == pytest.approx(30.0) and mild.time_to_target_s.std == 0.0
    assert mild.final_miou.mean == pytest.approx(40.0)
    assert mild.speedup == pytest.approx(120.0 / 30.0)


def test_summary_of_a_recipe_that_never_reached_has_no_time_or_speedup() -> None:
    (summary,) = summarize([_run("mild", 0, None, 10.0, 5.0)])
    assert summary.reached == 0 and summary.time_to_target_s is None and summary.speedup is None


# the tiny run, with 2 steps an epoch; the race itself sets each recipe's duration and the evaluations
TINY_RACE = [
    *(override for override in TINY if not override.startswith(("train.duration", "train.eval_interval"))),
    "data.synthetic_train_size=4", "data.synthetic_val_size=2", "train.global_batch_size=2", "train.device=cpu",
]


@pytest.mark.slow
def test_race_on_synthetic_data_writes_json_csv_and_plots(tmp_path, capsys) -> None:
    out = tmp_path / "race"
    sets = [arg for item in TINY_RACE for arg in ("--set", item)]
    # 2 steps per epoch: baseline 128ep x 0.01 -> 3 steps, mild 25ep x 0.01 -> 1 step; evaluation every
    # 0.125ep, which rounds to every step. Final scores on the training split (another split than the curves').
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "race", "--recipes", "baseline,literal=mild[recipe.transfer=none]", "--data", "synthetic",
              "--target-miou", "baseline", "--eval-data", "synthetic", "--eval-split", "train",
              "--scale", "0.01", "--seeds", "2", "--evals", "2", "--out", str(out), *sets])
    assert exit_info.value.code == 0, capsys.readouterr().err
    assert "the baseline's final mean" in capsys.readouterr().out

    record = json.loads((out / "race.json").read_text())
    assert record["settings"]["eval_interval"] == "0.125ep" and record["settings"]["target"] == "baseline"
    assert record["settings"]["final_scores_on"] == "synthetic (train)"
    assert [summary["recipe"] for summary in record["recipes"]] == ["baseline", "literal"]
    with open(out / "race.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted((row["recipe"], row["seed"]) for row in rows) == [
        ("baseline", "42"), ("baseline", "43"), ("literal", "42"), ("literal", "43")
    ]
    curves = {}
    for row, run in zip(rows, record["runs"]):
        curve = read_curve(out / "runs" / f"{row['recipe']}-seed{row['seed']}")
        curves[row["recipe"], row["seed"]] = curve
        # every step is evaluated
        assert [point.step for point in curve] == list(range(1, len(curve) + 1))
        assert len(curve) == (3 if row["recipe"] == "baseline" else 1)
        assert len(run["curve"]) == len(curve)
    baseline_finals = [curves["baseline", seed][-1].miou for seed in ("42", "43")]
    assert record["target_miou"] == pytest.approx(sum(baseline_finals) / 2)
    for row in rows:
        reached = next((p for p in curves[row["recipe"], row["seed"]] if p.miou >= record["target_miou"]), None)
        assert (row["time_to_target_s"] or None) == (str(reached.elapsed_s) if reached else None)
    for name in ("race.png", "race_pareto.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_race_refuses_a_target_that_is_neither_a_number_nor_baseline(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "race", "--data", "synthetic", "--target-miou", "best"])
    assert exit_info.value.code == 2
    assert "--target-miou 'best'" in capsys.readouterr().err


def test_race_refuses_an_output_folder_that_holds_runs(tmp_path) -> None:
    (tmp_path / "runs" / "mild-seed42").mkdir(parents=True)
    (tmp_path / "runs" / "mild-seed42" / "metrics.jsonl").write_text("{}\n")
    plan = race_configs(["mild"], "synthetic", 0.01, 1, TINY_RACE)
    with pytest.raises(ConfigError, match="already holds a run"):
        run_race(plan, tmp_path)


def test_eval_data_with_other_classes_is_refused_before_training(camvid_root) -> None:
    plan = race_configs(["mild"], "synthetic", 0.01, 1, TINY_RACE)
    with pytest.raises(ConfigError, match="--eval-data camvid:.*11 classes are not the training data's 6"):
        evaluation_data(plan[0][2], f"camvid:{camvid_root}")


@pytest.mark.slow
def test_final_scores_come_from_the_eval_data(tmp_path) -> None:
    plan = race_configs(["mild"], "synthetic", 0.01, 1, TINY_RACE, evals=1)
    config = plan[0][2]
    (on_val,) = run_race(plan, tmp_path / "val", build_raw_dataset(config.data, "val"))
    (on_train,) = run_race(plan, tmp_path / "train", build_raw_dataset(config.data, "train"))
    assert [p.miou for p in on_val.curve] == [p.miou for p in on_train.curve]  # the same training
    assert on_val.final_miou == on_val.curve[-1].miou  # the val split again: the last evaluation's score
    assert on_train.final_miou != on_train.curve[-1].miou  # another split: another score
