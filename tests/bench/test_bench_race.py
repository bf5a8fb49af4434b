"""``segrecipes bench race``: time to target on hand-made curves, scaling, summaries, and a tiny real race."""

from __future__ import annotations

import csv
import json
import math

import pytest
from helpers.tiny import TINY

from segrecipes.bench.race import (
    CurvePoint,
    RaceRun,
    race_configs,
    read_curve,
    run_race,
    scale_duration,
    shared_eval_interval,
    summarize,
    time_to_target,
)
from segrecipes.cli.main import main
from segrecipes.config import ConfigError, Duration

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
def test_race_on_synthetic_data_writes_json_csv_and_plot(tmp_path, capsys) -> None:
    out = tmp_path / "race"
    sets = [arg for item in TINY_RACE for arg in ("--set", item)]
    # 2 steps per epoch: baseline 128ep x 0.01 -> 3 steps, mild 25ep x 0.01 -> 1 step; evaluation every
    # 0.125ep, which rounds to every step
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "race", "--recipes", "baseline,mild", "--data", "synthetic", "--target-miou", "0",
              "--scale", "0.01", "--seeds", "2", "--evals", "2", "--out", str(out), *sets])
    assert exit_info.value.code == 0, capsys.readouterr().err
    assert "race to 0 mIoU" in capsys.readouterr().out

    record = json.loads((out / "race.json").read_text())
    assert record["target_miou"] == 0 and record["settings"]["eval_interval"] == "0.125ep"
    assert [summary["recipe"] for summary in record["recipes"]] == ["baseline", "mild"]
    with open(out / "race.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted((row["recipe"], row["seed"]) for row in rows) == [
        ("baseline", "42"), ("baseline", "43"), ("mild", "42"), ("mild", "43")
    ]
    for row, run in zip(rows, record["runs"]):
        curve = read_curve(out / "runs" / f"{row['recipe']}-seed{row['seed']}")
        # every step is evaluated; target 0 is reached at the first evaluation
        assert [point.step for point in curve] == list(range(1, len(curve) + 1))
        assert len(curve) == (3 if row["recipe"] == "baseline" else 1)
        assert float(row["time_to_target_s"]) == pytest.approx(curve[0].elapsed_s)
        assert int(row["images_to_target"]) == curve[0].samples == 2
        assert len(run["curve"]) == len(curve)
    assert (out / "race.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_race_refuses_an_output_folder_that_holds_runs(tmp_path) -> None:
    (tmp_path / "runs" / "mild-seed42").mkdir(parents=True)
    (tmp_path / "runs" / "mild-seed42" / "metrics.jsonl").write_text("{}\n")
    plan = race_configs(["mild"], "synthetic", 0.01, 1, TINY_RACE)
    with pytest.raises(ConfigError, match="already holds a run"):
        run_race(plan, tmp_path, 0.0)
