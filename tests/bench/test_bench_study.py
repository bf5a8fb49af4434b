"""``segrecipes bench study``: the frontier scores on hand-built results against hand-computed numbers,
the plan, the shards, and the command end to end at tiny sizes (resumed, reused, refused)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from helpers.tiny import TINY

from segrecipes.bench.entries import Entry
from segrecipes.bench.study.frontier import budget_points, cost_to_reach, line, miou_at
from segrecipes.bench.study.plan import parse_budget, parse_budget_lists, study_plan
from segrecipes.bench.study.report import score_study
from segrecipes.bench.study.runs import StudyRun, image_passes, shard_of
from segrecipes.cli.main import main
from segrecipes.config import ConfigError, Duration


def _run(label: str, budget: str, seed: int, passes: int, val: float, train: float = 0.0) -> StudyRun:
    return StudyRun(label, budget, seed, "", steps=passes // 4, images=passes, passes=passes,
                    wall_time_s=passes / 10, val_miou=val, train_miou=train)


# (label, budget, passes, val mIoU of seed 0, of seed 1): the baseline levels off at 46
TABLE = [
    ("baseline", "1ep", 100, 30, 32), ("baseline", "2ep", 200, 40, 42), ("baseline", "4ep", 400, 45, 47),
    ("baseline", "8ep", 800, 46, 46),
    ("mild", "0.5ep", 50, 40, 42), ("mild", "1ep", 100, 47, 49),
    ("medium", "2ep", 300, 47, 45), ("medium", "5.33ep", 800, 49, 49),
]
TRAIN_AT_LONGEST = {0: 60.0, 1: 62.0}
RUNS = [_run(label, budget, seed, passes, miou, TRAIN_AT_LONGEST[seed] if budget == "8ep" else 0.0)
        for label, budget, passes, *mious in TABLE for seed, miou in enumerate(mious)]
LOG_SHARE = math.log(1.5) / math.log(2)  # where 300 passes sit between 200 and 400 in log cost


def test_miou_between_budgets_is_interpolated_in_log_cost() -> None:
    frontier = [(100.0, 30.0), (400.0, 50.0)]
    assert miou_at(frontier, 200.0) == pytest.approx(40.0)  # halfway in log cost
    assert miou_at(frontier, 100.0) == 30.0 and miou_at(frontier, 400.0) == 50.0
    assert miou_at(frontier, 99.0) is None and miou_at(frontier, 401.0) is None


def test_cost_to_reach_a_target_interpolates_and_says_how() -> None:
    frontier = [(100.0, 30.0), (400.0, 50.0)]
    reach = cost_to_reach(frontier, 40.0)
    assert reach.cost == pytest.approx(200.0) and reach.how == "interpolated"
    assert cost_to_reach(frontier, 50.0).how == "at a budget"
    first = cost_to_reach(frontier, 20.0)
    assert first.cost == 100.0 and first.bound  # reached at the cheapest budget: at most that
    assert cost_to_reach(frontier, 51.0) is None


def test_scores_of_a_hand_built_study_match_hand_computed_numbers() -> None:
    scores = score_study(RUNS, ["baseline", "mild", "medium"])
    assert scores.target == pytest.approx(46.0)  # the baseline's mean at its longest budget
    regime = scores.regime
    assert (regime.second, regime.longest, regime.cost_ratio) == ("4ep", "8ep", 2.0)
    assert regime.gain.mean == pytest.approx(0.0) and regime.gain.std == pytest.approx(math.sqrt(2))  # +1, -1
    assert regime.levelled
    assert regime.train_val_gap.mean == pytest.approx(15.0) and regime.train_val_gap.std == pytest.approx(math.sqrt(2))

    mild, medium = scores.speedups
    assert mild.frontier.cost == pytest.approx(400.0) and mild.frontier.how == "at a budget"  # 46 reached at 4ep
    assert mild.entry.cost == pytest.approx(50 * 2 ** (5 / 7))  # 41 -> 48 between 50 and 100 passes
    assert mild.vs_frontier == pytest.approx(400 / (50 * 2 ** (5 / 7)))
    assert mild.vs_longest == pytest.approx(800 / (50 * 2 ** (5 / 7)))
    assert not mild.at_least
    assert medium.entry.cost == 300.0 and medium.at_least and medium.vs_frontier == pytest.approx(4 / 3)

    rows = {(row.label, row.budget): row for row in scores.equal_cost}
    assert rows["mild", "0.5ep"].frontier_miou is None  # cheaper than any baseline budget
    assert rows["mild", "1ep"].difference == pytest.approx(48 - 31)
    assert rows["mild", "1ep"].paired.mean == pytest.approx(17.0) and rows["mild", "1ep"].paired.std == 0
    at_300 = rows["medium", "2ep"]
    assert at_300.frontier_miou == pytest.approx(41 + 5 * LOG_SHARE)
    assert at_300.difference == pytest.approx(46 - (41 + 5 * LOG_SHARE))
    per_seed = [47 - (40 + 5 * LOG_SHARE), 45 - (42 + 5 * LOG_SHARE)]
    assert at_300.paired.mean == pytest.approx(sum(per_seed) / 2)
    assert at_300.paired.std == pytest.approx(abs(per_seed[0] - per_seed[1]) / math.sqrt(2))

    at_baseline = {row.label: row for row in scores.at_baseline_cost}
    assert at_baseline["medium"].difference == pytest.approx(3.0) and at_baseline["medium"].paired.mean == 3.0
    assert at_baseline["mild"].miou is None  # mild's budgets stop at 100 passes


def test_points_are_means_over_seeds_by_cost_and_lines_per_seed() -> None:
    points = budget_points(RUNS, "baseline")
    assert [point.budget for point in points] == ["1ep", "2ep", "4ep", "8ep"]
    assert points[0].miou.mean == 31.0 and points[0].miou.std == pytest.approx(math.sqrt(2))
    assert line(points, seed=1) == [(100.0, 32.0), (200.0, 42.0), (400.0, 47.0), (800.0, 46.0)]
    wall = budget_points(RUNS, "baseline", "wall_time_s")
    assert [point.cost for point in wall] == [10.0, 20.0, 40.0, 80.0]


def test_image_passes_count_a_sam_step_twice() -> None:
    assert image_passes(10, 8, None) == 80
    assert image_passes(10, 8, 2) == 8 * (10 + 5)  # SAM on steps 2, 4, 6, 8, 10
    assert image_passes(9, 8, 2) == 8 * (9 + 4)
    assert image_passes(9, 8, 1) == 8 * 18


def test_budgets_in_any_unit_or_as_fractions_of_a_reference() -> None:
    assert parse_budget("8ep", None) == Duration(8, "ep")
    assert parse_budget("0.25", Duration(32, "ep")) == Duration(8, "ep")
    assert parse_budget("0.3", Duration(10, "ba")) == Duration(3, "ba")
    for bad in ("0.25dur", "abc", "-1"):
        with pytest.raises(ConfigError, match="--budgets"):
            parse_budget(bad, Duration(8, "ep"))
    with pytest.raises(ConfigError, match="--reference-budget"):
        parse_budget("0.5", None)
    assert parse_budget_lists(["8ep,16ep", "mild=4ep"], ["baseline", "mild"]) == {None: ["8ep", "16ep"],
                                                                                 "mild": ["4ep"]}
    with pytest.raises(ConfigError, match="no entry is labelled 'hot'"):
        parse_budget_lists(["hot=4ep"], ["baseline", "mild"])
    with pytest.raises(ConfigError, match="no budgets for mild"):
        parse_budget_lists(["baseline=4ep"], ["baseline", "mild"])


def test_plan_is_seed_by_seed_with_each_budget_a_whole_run() -> None:
    plan = study_plan([Entry("baseline", "baseline"), Entry("mild", "mild")], "synthetic",
                      {None: ["2ba", "4ba"], "mild": ["0.5"]}, seeds=2, overrides=TINY)
    assert [run.name for run in plan] == ["baseline-2ba-seed42", "baseline-4ba-seed42", "mild-3ba-seed42",
                                          "baseline-2ba-seed43", "baseline-4ba-seed43", "mild-3ba-seed43"]
    assert plan[1].config.train.duration == Duration(4, "ba") and plan[3].config.train.seed == 43
    # a bare budget is a fraction of the entry's duration (TINY's 6ba); carried-over constants follow each budget
    assert plan[2].config.ema.half_life.unit == "dur"


def test_shards_split_the_plan_and_balance_the_work() -> None:
    plan = study_plan([Entry("baseline", "baseline"), Entry("medium", "medium")], "synthetic",
                      {None: ["1ba", "2ba", "4ba", "8ba"]}, seeds=2, overrides=TINY)
    first, second = shard_of(plan, 0, 2), shard_of(plan, 1, 2)
    assert sorted(run.name for run in first + second) == sorted(run.name for run in plan)
    assert not {run.name for run in first} & {run.name for run in second}
    work = [sum(run.budget.value * (1.5 if run.label == "medium" else 1) for run in shard) for shard in (first, second)]
    assert abs(work[0] - work[1]) <= 4  # 45 + 45 batches of work: within the smallest medium run
    with pytest.raises(ConfigError, match="--shard"):
        shard_of(plan, 2, 2)


def _study(out: Path, *extra: str) -> int:
    args = ["bench", "study", "--data", "synthetic", "--recipes", "baseline,mild", "--budgets", "2ba,4ba",
            "--out", str(out), *[arg for item in TINY if not item.startswith("train.duration") for arg in ("--set", item)],
            "--set", "train.loggers=[]", "--set", "train.log_images=0", *extra]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code


def _results(out: Path) -> dict[str, dict]:
    return {path.parent.name: json.loads(path.read_text()) for path in sorted((out / "runs").glob("*/result.json"))}


@pytest.mark.slow
def test_a_study_resumes_reuses_finished_runs_and_refuses_another_config(tmp_path: Path, capsys) -> None:
    out = tmp_path / "study"
    assert _study(out, "--shard", "1/2") == 0  # one of two processes: half the runs
    half = _results(out)
    assert 0 < len(half) < 4
    stamps = {name: (out / "runs" / name / "result.json").stat().st_mtime_ns for name in half}
    assert _study(out) == 0
    results = _results(out)
    assert set(results) == {"baseline-2ba-seed42", "baseline-4ba-seed42", "mild-2ba-seed42", "mild-4ba-seed42"}
    assert all((out / "runs" / name / "result.json").stat().st_mtime_ns == stamp for name, stamp in stamps.items())
    assert "4 of 4 planned runs finished" in capsys.readouterr().out
    record = json.loads((out / "study.json").read_text())
    assert len(record["runs"]) == 4 and record["regime"]["longest"] == "4ba" and (out / "study.png").stat().st_size
    assert (out / "study.csv").read_text().count("\n") == 5

    # a run that trained but has no result (killed before scoring) continues from its last checkpoint: no new step
    interrupted = out / "runs" / "mild-4ba-seed42"
    rows = (interrupted / "metrics.jsonl").read_text()
    (interrupted / "result.json").unlink()
    assert _study(out) == 0
    again = _results(out)["mild-4ba-seed42"]
    assert again["val_miou"] == pytest.approx(results["mild-4ba-seed42"]["val_miou"])
    assert again["steps"] == 4 and (interrupted / "metrics.jsonl").read_text() == rows

    capsys.readouterr()
    assert _study(out, "--set", "optimizer.lr=0.5") == 2
    assert "holds a run of another config (optimizer.lr is 0.01, planned 0.5)" in capsys.readouterr().err

    assert _study(out, "--report-only") == 0  # scores what is there, trains nothing
    assert "4 of 4 planned runs finished" in capsys.readouterr().out


@pytest.mark.parametrize(("extra", "message"), [
    (("--shard", "2/2"), "--shard 2/2"), (("--shard", "x"), "--shard 'x'"), (("--currency", "euros"), "--currency"),
    (("--budgets", "hot=2ba"), "no entry is labelled 'hot'"), (("--recipes", "baseline,nope"), "unknown recipe"),
])
def test_bad_study_options_are_one_line_and_exit_2(tmp_path: Path, capsys, extra, message) -> None:
    assert _study(tmp_path / "study", *extra) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "study").exists()


def test_how_a_speed_up_is_known_when_either_side_reached_the_target_at_its_cheapest_budget() -> None:
    from segrecipes.bench.study.frontier import Reach, SpeedUp

    exact, bound = Reach(100.0, "interpolated"), Reach(50.0, "at most (reached at its cheapest budget)")
    assert SpeedUp("e", 40.0, exact, exact, 800.0).frontier_bound == ""
    assert SpeedUp("e", 40.0, bound, exact, 800.0).frontier_bound == ">="  # the entry's cost is at most 50
    assert SpeedUp("e", 40.0, exact, bound, 800.0).frontier_bound == "<="  # the frontier's cost is at most 50
    both = SpeedUp("e", 40.0, bound, bound, 800.0)
    assert both.frontier_bound == "?" and both.at_least and both.vs_longest == 16.0


def test_the_regime_check_scales_the_gain_to_a_doubling_of_the_cost() -> None:
    runs = [_run("baseline", "2ep", seed, 200, 40.0 + seed) for seed in (0, 1)]
    runs += [_run("baseline", "8ep", seed, 800, 41.5 + seed) for seed in (0, 1)]  # +1.5 over two doublings
    regime = score_study(runs, ["baseline"]).regime
    assert regime.cost_ratio == 4.0 and regime.gain.mean == pytest.approx(1.5)
    assert regime.gain_per_doubling == pytest.approx(0.75) and regime.levelled


def test_a_seeds_own_line_is_ordered_by_its_own_cost() -> None:
    runs = [StudyRun("b", "1ep", 0, "", 1, 8, 8, wall_time_s=30.0, val_miou=10.0, train_miou=0.0),
            StudyRun("b", "2ep", 0, "", 2, 16, 16, wall_time_s=20.0, val_miou=20.0, train_miou=0.0),
            StudyRun("b", "1ep", 1, "", 1, 8, 8, wall_time_s=10.0, val_miou=11.0, train_miou=0.0),
            StudyRun("b", "2ep", 1, "", 2, 16, 16, wall_time_s=60.0, val_miou=21.0, train_miou=0.0)]
    points = budget_points(runs, "b", "wall_time_s")
    assert line(points, seed=0) == [(20.0, 20.0), (30.0, 10.0)]  # a noisy machine: the longer run took less time
