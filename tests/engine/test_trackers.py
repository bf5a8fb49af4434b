"""W&B (offline) and MLflow (a local file store) receive the config, the metrics, the sample images
and the summary; a missing package is a one-line error naming the extra. Nothing reaches the network."""

from __future__ import annotations

import glob
import json
import struct
import sys
import time

import pytest
from helpers.tiny import tiny_config

from segrecipes.cli.main import main
from segrecipes.config import ConfigError
from segrecipes.engine.trackers import check_trackers, flat_params
from segrecipes.run import build_trainer

RUN = ("data.synthetic_val_size=2", "train.log_images=1", "train.eval_interval=2ba", "train.duration=4ba")


def _wandb_records(path: str) -> list:
    """The protobuf records of an offline ``.wandb`` file (a 7-byte header, then LevelDB-log blocks)."""
    from wandb.proto import wandb_internal_pb2

    data, block, position, pending, records = open(path, "rb").read(), 32768, 7, b"", []
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if length == 0 and kind == 0:
            position += left
            continue
        chunk, position = data[position + 7:position + 7 + length], position + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


@pytest.mark.slow
def test_wandb_offline_run_records_metrics_per_class_and_the_summary(tmp_path, monkeypatch) -> None:
    pytest.importorskip("wandb", reason="the wandb extra is not installed (pip install 'segrecipes[wandb]')")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "run"
    build_trainer(tiny_config(*RUN, "train.loggers=[wandb]"), run_dir).fit()
    (path,) = glob.glob(str(run_dir / "wandb" / "offline-run-*" / "run-*.wandb"))
    records = _wandb_records(path)
    for _ in range(100):  # W&B's writer process may still be flushing after finish() returned
        if any(record.WhichOneof("record_type") == "exit" for record in records):
            break
        time.sleep(0.2)
        records = _wandb_records(path)
    history, summary = {}, {}
    for record in records:
        kind = record.WhichOneof("record_type")
        items = record.history.item if kind == "history" else record.summary.update if kind == "summary" else []
        target = history if kind == "history" else summary
        for item in items:
            target[item.key or "/".join(item.nested_key)] = item.value_json
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last = [row for row in rows if "miou" in row][-1]
    assert float(history["val/miou"]) == pytest.approx(last["miou"])
    assert any(key.startswith("val_iou/") for key in history) and any(key.startswith("samples/") for key in history)
    assert "best_checkpoint" in summary and "miou" in summary
    assert not (run_dir / "tensorboard").exists()  # only the trackers asked for


@pytest.mark.slow
def test_mlflow_file_store_run_records_params_metrics_images_and_summary(tmp_path, monkeypatch) -> None:
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed (pip install 'segrecipes[mlflow]')")
    from mlflow.tracking import MlflowClient

    store = f"file://{tmp_path / 'mlruns'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
    run_dir = tmp_path / "run"
    build_trainer(tiny_config(*RUN, "train.loggers=[mlflow,tensorboard]"), run_dir).fit()
    client = MlflowClient(store)
    (experiment,) = [e for e in client.search_experiments() if e.name == "segrecipes"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "run" and run.data.params["optimizer.lr"] == "0.01"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    mious = [row["miou"] for row in rows if "miou" in row]
    assert [m.value for m in client.get_metric_history(run.info.run_id, "val/miou")] == pytest.approx(mious)
    assert "final/miou" in run.data.metrics and run.data.tags["best_checkpoint"].endswith("best.pt")
    assert any(key.startswith("val_iou/") for key in run.data.metrics)
    assert client.list_artifacts(run.info.run_id, "samples")
    assert (run_dir / "tensorboard").is_dir()


def test_a_missing_tracker_package_is_one_line_naming_the_extra(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # find_spec then finds nothing, as without the package
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *args: None if name == "wandb" else object())
    with pytest.raises(ConfigError, match=r"wandb is not installed: pip install 'segrecipes\[wandb\]'"):
        check_trackers(["tensorboard", "wandb"])
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--set", "train.loggers=[wandb]", "--run-dir", "/nonexistent/never"])
    assert exit_info.value.code == 2
    assert "segrecipes[wandb]" in capsys.readouterr().err


def test_params_are_the_config_flattened() -> None:
    assert flat_params({"optimizer": {"lr": 0.08}, "data": {"scale_range": [0.5, 2.0]}, "recipe": {"name": None}}) == {
        "optimizer.lr": 0.08, "data.scale_range": "[0.5, 2.0]", "recipe.name": None}


def test_mlflow_names_are_cleaned_per_path_component_and_kept_apart() -> None:
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed (pip install 'segrecipes[mlflow]')")
    from mlflow.utils.validation import _validate_metric_name

    from segrecipes.engine.trackers import MLflowTracker

    tracker = MLflowTracker.__new__(MLflowTracker)  # the naming alone: no run is started
    tracker._names = {}
    keys = ["val_iou/a/b/", "val_iou/..", "val_iou/a//b", "val_iou/a(b", "val_iou/a)b", "val_iou/" + "x" * 300,
            "val_iou/traffic light"]
    names = [tracker._name(key) for key in keys]
    for name in names:
        _validate_metric_name(name)  # raises on a name MLflow refuses
        assert len(name) <= 250
    assert len(set(names)) == len(keys)  # a( b and a)b stay two metrics
    assert names[-1] == "val_iou/traffic light" and tracker._name(keys[3]) == names[3]  # stable
