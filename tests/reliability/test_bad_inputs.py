"""Bad configs, data and checkpoints through the real command line: exit code 2, one line naming
the culprit, no traceback, and an existing run's checkpoints untouched."""

from __future__ import annotations

import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.bad_data import folder_dataset
from helpers.tiny import tiny_args

from segrecipes.cli.main import main

# the tiny run without its data spec: each test gives --data
TINY = tiny_args("train.duration=2ba", "train.eval_interval=1ep", "train.checkpoint_interval=1ep",
                 without=("data.spec",))
SYNTHETIC_CLASSES = 6


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Exit code and everything printed; an exception that escapes main() shows up as a traceback."""
    try:
        main([str(arg) for arg in args])
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code if isinstance(exit_info.code, int) else 1
    except Exception:  # what a user would see as a crash
        code, crash = 1, traceback.format_exc()
    else:
        crash = ""
    captured = capsys.readouterr()
    return code, captured.out + captured.err + (crash if code == 1 else "")


def assert_one_line_error(code: int, output: str, *named: str) -> None:
    assert code == 2, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and output.rstrip().endswith(errors[0]), output  # one line, and the last one
    for name in named:
        assert name in errors[0], output


def snapshot(run_dir: Path) -> dict[str, tuple[int, int, int]]:
    """Each checkpoint's size, inode and modification time: a rewrite or replacement changes them."""
    return {path.name: (path.stat().st_size, path.stat().st_ino, path.stat().st_mtime_ns)
            for path in sorted((run_dir / "checkpoints").iterdir())}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-step run with checkpoints, made by the CLI itself."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", "synthetic", *TINY, "--run-dir", str(run_dir)])
    assert exit_info.value.code == 0 and (run_dir / "checkpoints" / "last.pt").exists()
    return run_dir


@pytest.fixture
def untouched(trained_run: Path) -> Iterator[Path]:
    """The trained run; the test fails if its checkpoints change."""
    before = snapshot(trained_run)
    yield trained_run
    assert snapshot(trained_run) == before


# --- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--set", "train.batch_size=4"], ["train.batch_size", "did you mean 'train.global_batch_size'"]),
        (["--set", "train.global_batch_size=many"], ["train.global_batch_size", "many"]),
        (["--recipe", "mildd"], ["mildd", "did you mean 'mild'"]),
        (["--duration", "10 epochs"], ["duration", "10 epochs"]),
        (["--set", "sam.interval=0"], ["sam.interval"]),
        (["--methods", "ema,swa"], ["--methods", "swa"]),
        (["--data", "imagenet:/data"], ["imagenet"]),
        (["--data", "folder:/no/such/dataset"], ["/no/such/dataset"]),
        (["--config", "/no/such/config.yaml"], ["/no/such/config.yaml"]),
        (["--loss", "focal"], ["loss.name", "focal"]),
        (["--set", "loss.ce_weight=0", "--set", "loss.dice_weight=0"], ["ce_weight=0", "dice_weight=0"]),
        (["--set", "eval.tta=flop"], ["eval.tta", "flop"]),
        (["--set", "eval.mode=slide", "--set", "eval.stride=600"], ["eval.stride 600", "eval.crop_size 512"]),
    ],
    ids=["unknown-key", "wrong-type", "unknown-recipe", "bad-duration", "sam-interval-0", "unknown-method",
         "unknown-data-kind", "missing-data-folder", "missing-config-file", "unknown-loss", "no-loss",
         "unknown-tta", "stride-past-the-window"],
)
def test_bad_config_is_refused_before_a_run_folder_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], named: list[str]
) -> None:
    code, output = run_cli(capsys, "train", "--data", "synthetic", *TINY, "--run-dir", tmp_path / "run", *args)
    assert_one_line_error(code, output, *named)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_bad_override_on_resume_leaves_the_run_untouched(untouched: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, output = run_cli(capsys, "train", "--resume", untouched, "--set", "sam.interval=0")
    assert_one_line_error(code, output, "sam.interval")


@pytest.mark.slow
def test_starting_a_new_run_in_a_used_run_folder_is_refused(
    untouched: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = run_cli(capsys, "train", "--data", "synthetic", *TINY, "--run-dir", untouched)
    assert_one_line_error(code, output, "--run-dir", str(untouched), "--resume")


@pytest.mark.slow
def test_the_real_entry_point_prints_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "segrecipes.cli.main", "train", "--set", "train.nope=1", "--run-dir", tmp_path / "run"],
        capture_output=True, text=True, timeout=120,
    )
    assert_one_line_error(result.returncode, result.stdout + result.stderr, "train.nope")


# --- data ----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("defect", "culprit"),
    [
        ("rgb-mask", "masks/train/bad.png"),
        ("no-mask", "images/train/bad.jpg"),
        ("corrupt-image", "images/train/bad.jpg"),
    ],
)
def test_bad_folder_data_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], defect: str, culprit: str
) -> None:
    data = folder_dataset(tmp_path / "data", 3, {"bad": defect}, train_images=3)
    code, output = run_cli(capsys, "train", "--data", f"folder:{data}", *TINY, "--run-dir", tmp_path / "run")
    assert_one_line_error(code, output, str(data / culprit))
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_bad_folder_data_with_loader_workers_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = folder_dataset(tmp_path / "data", 3, {"bad": "corrupt-image"}, train_images=3)
    code, output = run_cli(capsys, "train", "--data", f"folder:{data}", *TINY, "--set", "data.num_workers=1",
                           "--run-dir", tmp_path / "run")
    assert_one_line_error(code, output, str(data / "images/train/bad.jpg"))


@pytest.mark.slow
def test_bad_data_on_resume_leaves_the_run_untouched(
    untouched: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = folder_dataset(tmp_path / "data", SYNTHETIC_CLASSES, {"bad": "rgb-mask"}, train_images=3)
    code, output = run_cli(capsys, "train", "--resume", untouched, "--duration", "4ba", "--data", f"folder:{data}")
    assert_one_line_error(code, output, str(data / "masks/train/bad.png"))


@pytest.mark.slow
def test_resuming_on_data_with_another_class_count_is_refused(
    untouched: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = folder_dataset(tmp_path / "data", 3)
    code, output = run_cli(capsys, "train", "--resume", untouched, "--duration", "4ba", "--data", f"folder:{data}")
    assert_one_line_error(code, output, "3", str(SYNTHETIC_CLASSES))


# --- checkpoints ---------------------------------------------------------------------------------


def test_a_missing_checkpoint_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere" / "last.pt"
    code, output = run_cli(capsys, "eval", "--checkpoint", missing, "--device", "cpu")
    assert_one_line_error(code, output, str(missing))


def test_a_corrupt_checkpoint_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x02 definitely not a checkpoint")
    code, output = run_cli(capsys, "eval", "--checkpoint", corrupt, "--device", "cpu")
    assert_one_line_error(code, output, str(corrupt))


@pytest.mark.slow
def test_a_truncated_checkpoint_is_named(trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truncated = tmp_path / "truncated.pt"
    data = (trained_run / "checkpoints" / "best.pt").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    code, output = run_cli(capsys, "eval", "--checkpoint", truncated, "--device", "cpu")
    assert_one_line_error(code, output, str(truncated))


def test_resuming_a_run_whose_checkpoints_are_all_corrupt_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"garbage")
    (run_dir / "checkpoints" / "step-00000002.pt").write_bytes(b"more garbage")
    before = snapshot(run_dir)
    code, output = run_cli(capsys, "train", "--resume", run_dir)
    assert_one_line_error(code, output, str(run_dir), "unreadable")
    assert snapshot(run_dir) == before


def test_resuming_a_folder_without_checkpoints_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, output = run_cli(capsys, "train", "--resume", tmp_path / "empty")
    assert_one_line_error(code, output, str(tmp_path / "empty"), "no checkpoint")


@pytest.mark.slow
def test_evaluating_on_data_with_another_class_count_is_refused(
    untouched: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = folder_dataset(tmp_path / "data", 3)
    code, output = run_cli(capsys, "eval", "--checkpoint", untouched, "--data", f"folder:{data}", "--device", "cpu")
    assert_one_line_error(code, output, f"folder:{data}", "3 classes", f"trained for {SYNTHETIC_CLASSES}")
