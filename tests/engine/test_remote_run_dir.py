"""A run folder on S3 (moto's server on 127.0.0.1, spoken to over the real wire protocol by s3fs): uploads,
the ``last`` pointer written after them, pruning, kills mid-upload, an exact resume from the remote folder,
a corrupt newest checkpoint, credentials kept out of the folder, and the errors before any work."""

from __future__ import annotations

import importlib
import os
import random
import re
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
import torch
from helpers.s3_server import S3Server, s3_server
from helpers.faults import SignalAtStep, free_port
from helpers.tiny import tiny_args, tiny_config

from segrecipes.cli.main import main
from segrecipes.run import resumed_config
from segrecipes.engine.interrupt import RunInterrupted
from segrecipes.engine.remote import POINTER, open_mirror
from segrecipes.engine.trainer import Trainer
from segrecipes.methods import Method, StepContext
from segrecipes.run import build_trainer

KEY_ID, SECRET = "AKIASEGRECIPESTEST01", "segrecipes-test-secret-3f9c2a7d51"
# no momentum buffers: half the bytes for every checkpoint to write and move; no sample images to render
SMALL = ("optimizer.momentum=0", "train.log_images=0")
FAST = (*SMALL, "train.loggers=[]")  # and no TensorBoard to import, where the test does not look at its files


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


@pytest.fixture
def bucket(s3, monkeypatch, tmp_path, request) -> str:
    """A new bucket on the test server, and the environment s3fs reads (here and in subprocesses); a staging
    cache of this test's own."""
    for name, value in {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_ENDPOINT_URL": s3.url, "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
                        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
                        "SEGRECIPES_CACHE_DIR": str(tmp_path / "cache")}.items():
        monkeypatch.setenv(name, value)
    s3.requests.clear(), s3.uploads_begun.clear()
    s3.upload_delay_s = 0.0
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    _fs().mkdir(name)
    return name


def _fs() -> fsspec.AbstractFileSystem:
    return fsspec.filesystem("s3", skip_instance_cache=True)


def _cli(*args: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return exit_info.value.code


def _names(bucket: str, folder: str = "run/checkpoints") -> list[str]:
    return sorted(path.rsplit("/", 1)[-1] for path in _fs().ls(f"{bucket}/{folder}", refresh=True))


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in trainer.model.state_dict().items()}


@pytest.mark.slow
def test_checkpoints_are_uploaded_then_pointed_at_then_pruned_and_hold_no_credentials(s3, bucket, capsys) -> None:
    url = f"s3://{bucket}/run"
    assert _cli("train", *tiny_args(*SMALL, "train.duration=3ba", "train.checkpoint_interval=1ba"), "--run-dir",
                url) == 0
    assert f"run folder: {url} (staged in " in capsys.readouterr().out
    assert _names(bucket) == ["best.pt", POINTER, "step-00000002.pt", "step-00000003.pt"]  # keep_last: 2
    assert _fs().cat_file(f"{bucket}/run/checkpoints/{POINTER}") == b"step-00000003.pt\n"
    everything = _fs().find(f"{bucket}/run")
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "report.html"):
        assert f"{bucket}/run/{name}" in everything, name
    assert any("/tensorboard/events.out.tfevents" in path for path in everything)
    assert b'"step": 3' in _fs().cat_file(f"{bucket}/run/summary.json")

    # on the wire (requests in the order they were answered; the client sends one at a time): each step file's
    # upload completes, then the pointer is written, then what keep_last no longer keeps is deleted
    writes = [(method, path.rsplit("/", 1)[-1]) for method, path in s3.requests
              if method in ("PUT", "DELETE") and "/checkpoints/" in path and not path.endswith("/best.pt")]
    assert writes == [("PUT", "step-00000001.pt"), ("PUT", POINTER), ("PUT", "step-00000002.pt"), ("PUT", POINTER),
                      ("PUT", "step-00000003.pt"), ("PUT", POINTER), ("DELETE", "step-00000001.pt")]

    for path in everything:  # credentials come from the environment and are never written to the folder
        content = _fs().cat_file(path)
        assert SECRET.encode() not in content and KEY_ID.encode() not in content, path


@pytest.mark.slow
def test_resume_from_the_remote_folder_on_another_machine_is_bit_identical(bucket, tmp_path, monkeypatch) -> None:
    cfg = tiny_config(*FAST, "train.duration=6ba", "train.log_interval=1")
    straight = build_trainer(cfg, None)  # no run folder: the weights are all this run is for
    straight.fit()

    url = f"s3://{bucket}/run"
    mirror = open_mirror(url)
    stopped = build_trainer(cfg, mirror.local, extra_methods=[SignalAtStep(3)], mirror=mirror)
    with pytest.raises(RunInterrupted, match=f"segrecipes train --resume {url}"):
        stopped.fit()

    monkeypatch.setenv("SEGRECIPES_CACHE_DIR", str(tmp_path / "another-machine"))
    mirror = open_mirror(url)
    assert not any(mirror.local.iterdir())
    config, state = resumed_config(mirror.local, [], mirror)
    assert state["clock"]["step"] == 3
    mirror.pull()
    resumed = build_trainer(config, mirror.local, resume=state, mirror=mirror)
    assert resumed.fit()["step"] == 6
    expected, actual = _weights(straight), _weights(resumed)
    assert expected.keys() == actual.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=0, msg=key)
    rows = _fs().cat_file(f"{bucket}/run/metrics.jsonl").decode().splitlines()
    assert [int(re.search(r'"step": (\d+)', row).group(1)) for row in rows[:6]] == [1, 2, 3, 4, 5, 6]


class ReadRemoteEvents(Method):
    """After ``step``, keeps what the remote folder's TensorBoard events hold (uploaded at the checkpoint before)."""

    name = "read_remote_events"

    def __init__(self, folder: str, step: int, into: Path) -> None:
        self.folder, self.step, self.into = folder, step, into

    def after_step(self, context: StepContext) -> None:
        if context.step == self.step:
            _fs().get(f"{self.folder}/tensorboard/", str(self.into), recursive=True)


@pytest.mark.slow
def test_tensorboard_events_are_complete_in_the_remote_folder_at_each_checkpoint(bucket, tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    url = f"s3://{bucket}/run"
    mirror = open_mirror(url)
    reader = ReadRemoteEvents(f"{bucket}/run", step=2, into=tmp_path / "seen")
    trainer = build_trainer(tiny_config(*SMALL, "train.duration=2ba", "train.checkpoint_interval=1ba",
                                        "train.log_interval=1"), mirror.local, extra_methods=[reader], mirror=mirror)
    trainer.fit()
    events = EventAccumulator(str(tmp_path / "seen")).Reload()
    assert [event.step for event in events.Scalars("train/skipped_steps")] == [1]  # step 1's row, all of it


@pytest.mark.slow
def test_a_refused_upload_costs_that_upload_not_the_run(s3, bucket) -> None:
    """The store refuses one checkpoint: a warning, ``last`` stays on the one before, the next one is uploaded."""
    url = f"s3://{bucket}/run"
    mirror = open_mirror(url)
    trainer = build_trainer(tiny_config(*FAST, "train.duration=3ba", "train.checkpoint_interval=1ba",
                                        "train.keep_last=3"), mirror.local, mirror=mirror)
    s3.refused_uploads = 1
    with pytest.warns(UserWarning, match=rf"{url}: step-00000001.pt not uploaded \(\w+: .*\); it is kept in "):
        assert trainer.fit()["step"] == 3
    assert _names(bucket) == ["best.pt", POINTER, "step-00000002.pt", "step-00000003.pt"]
    assert _fs().cat_file(f"{bucket}/run/checkpoints/{POINTER}") == b"step-00000003.pt\n"


@pytest.mark.slow
def test_a_refused_final_upload_is_one_line_saying_where_the_run_is(s3, bucket, capsys) -> None:
    url = f"s3://{bucket}/run"
    s3.refused_uploads = 2  # the last checkpoint, and its second try at the end of the run
    with pytest.warns(UserWarning, match="step-00000002.pt not uploaded"):
        code = _cli("train", *tiny_args(*FAST, "train.duration=2ba", "train.checkpoint_interval=2ba"),
                    "--run-dir", url)
    error = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in error and error.startswith(f"error: {url}: the end of the run could not be "
                                                                 "uploaded ("), error
    staged = Path(error.split("the run folder is in ")[1].split(":")[0])
    assert (staged / "checkpoints" / "step-00000002.pt").is_file()  # nothing is lost: it is all there
    remote = [path.rsplit("/", 1)[-1] for path in _fs().find(f"{bucket}/run")]
    assert POINTER not in remote and not [name for name in remote if name.startswith("step-")], remote


@pytest.mark.slow
def test_a_corrupt_newest_remote_checkpoint_is_skipped_with_a_warning(bucket, capsys) -> None:
    url = f"s3://{bucket}/run"
    assert _cli("train", *tiny_args(*FAST, "train.duration=2ba", "train.checkpoint_interval=1ba"), "--run-dir",
                url) == 0
    _fs().pipe_file(f"{bucket}/run/checkpoints/step-00000002.pt", b"truncated")
    with pytest.warns(UserWarning, match=f"skipping unreadable checkpoint: {url}/checkpoints/step-00000002.pt"):
        assert _cli("train", "--resume", url, "--duration", "3ba") == 0
    assert "final val mIoU" in capsys.readouterr().out
    assert _fs().cat_file(f"{bucket}/run/checkpoints/{POINTER}") == b"step-00000003.pt\n"
    _, state = open_mirror(url).latest_checkpoint()
    assert state["clock"]["step"] == 3 and [row["step"] for row in state["history"]] == [3]


TRAIN_ARGS = tiny_args(*FAST, "train.duration=5ba", "train.checkpoint_interval=1ba")


def _train_process(url: str, log: Path) -> subprocess.Popen:
    with open(log, "w") as output:
        return subprocess.Popen([sys.executable, "-m", "segrecipes.cli.main", "train", *TRAIN_ARGS, "--run-dir", url,
                                 "--resume", "auto"], env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=output,
                                stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_sigkill_during_uploads_always_leaves_a_loadable_last(s3, bucket, tmp_path) -> None:
    url, rng, log = f"s3://{bucket}/run", random.Random(7), tmp_path / "train.log"
    s3.upload_delay_s = 1.5  # each step file's upload lasts over 1.5 s: a kill within 0.7 s of its start lands in it
    for _ in range(3):  # each start resumes, completes one upload, and is killed at a random moment of the next
        wanted = len(s3.uploads_begun) + 2
        process = _train_process(url, log)
        deadline = time.monotonic() + 120
        while len(s3.uploads_begun) < wanted:
            assert process.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.01)
        uploading = s3.uploads_begun[-1].rsplit("/", 1)[-1]
        time.sleep(rng.uniform(0.0, 0.7))
        process.send_signal(signal.SIGKILL)
        process.wait()
        mirror = open_mirror(url)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # `last` itself loads: no corrupt checkpoint to skip
            path, state = mirror.latest_checkpoint()
        pointed = _fs().cat_file(f"{bucket}/run/checkpoints/{POINTER}").decode().strip()
        assert path.endswith(pointed) and f"step-{state['clock']['step']:08d}.pt" == pointed < uploading
        assert uploading not in mirror.step_files()  # the interrupted upload left no object behind
    s3.upload_delay_s = 0.0
    assert _cli("train", *TRAIN_ARGS, "--run-dir", url, "--resume", "auto") == 0  # in this process: one start-up less
    assert _names(bucket) == ["best.pt", POINTER, "step-00000004.pt", "step-00000005.pt"]
    assert open_mirror(url).latest_checkpoint()[1]["clock"]["step"] == 5


def test_s3_without_s3fs_is_one_line_naming_the_pip_install(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "s3fs", None)  # as without the package
    monkeypatch.delitem(importlib.import_module("fsspec.registry")._registry, "s3", raising=False)  # imported ones
    assert _cli("train", *tiny_args(), "--run-dir", "s3://bucket/run") == 2
    error = capsys.readouterr().err.strip()
    assert error == ("error: s3://bucket/run: s3:// needs s3fs, which is not installed: "
                     "pip install 'segrecipes[s3]'")


def test_an_unknown_protocol_is_one_line_naming_the_url(capsys) -> None:
    assert _cli("train", *tiny_args(), "--resume", "auto", "--run-dir", "nosuchstore://bucket/run") == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and error.startswith("error: nosuchstore://bucket/run: unknown storage protocol")
    assert "pip install" in error


def test_a_missing_bucket_or_unreachable_endpoint_fails_before_training(bucket, monkeypatch, capsys) -> None:
    assert _cli("train", *tiny_args(), "--run-dir", "s3://no-such-bucket/run") == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and error.startswith("error: s3://no-such-bucket/run: cannot write to the run folder")
    assert "bucket does not exist" in error

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    assert _cli("train", *tiny_args(), "--run-dir", f"s3://{bucket}/run") == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and f"s3://{bucket}/run: cannot write to the run folder" in error
    assert "Could not connect to the endpoint URL" in error
