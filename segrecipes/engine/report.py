"""One self-contained HTML page per run (``report.html``, images embedded) that tells its story:
config, curves against steps and wall time, final per-class IoU, confusion matrix, the last sample
predictions, throughput and timing, and the environment it ran in. Built from the run folder's files
alone, so it can be made again later (``segrecipes report RUN_DIR``)."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import yaml

from segrecipes.cache import write_text_atomic
from segrecipes.errors import ConfigError

REPORT_NAME = "report.html"
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { border: 1px solid #ddd; padding: 0.25em 0.6em; }
th { background: #f4f4f4; text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; }
.samples img { display: block; margin-bottom: 0.6em; border: 1px solid #ddd; min-width: min(100%, 640px);
               image-rendering: pixelated; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.8em; max-height: 30em; }
.muted { color: #777; }
"""


def environment_info(device: Any, world_size: int) -> dict[str, Any]:
    """Versions and hardware a run used, for its summary and report."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import torch
    import torchvision

    try:
        ours = version("segrecipes")
    except PackageNotFoundError:  # run from a source tree that was never installed
        ours = "source"
    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return {"segrecipes": ours, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "platform": platform.platform(), "device": f"{device} ({name})",
            "processes": world_size, "cpu threads": torch.get_num_threads()}


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return _img_tag(buffer.getvalue())


def _img_tag(data: bytes, alt: str = "") -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _curves(train: list[dict[str, Any]], val: list[dict[str, Any]]) -> str:
    """Loss, learning rate and mIoU against steps (top) and wall time (bottom)."""
    from matplotlib.figure import Figure  # imported here: matplotlib is slow to import for every command

    figure = Figure(figsize=(12, 6))
    axes = figure.subplots(2, 3)
    series = [("loss", train, "loss"), ("learning rate", train, "lr"), ("val mIoU (%)", val, "miou")]
    for column, (title, rows, key) in enumerate(series):
        points = [row for row in rows if row.get(key) is not None]
        for row_index, (x_key, x_label, scale) in enumerate((("step", "step", 1), ("elapsed_s", "wall time (min)", 60))):
            ax = axes[row_index][column]
            ax.plot([row[x_key] / scale for row in points], [row[key] for row in points], marker="." if key == "miou"
                    else None)
            ax.set_title(title, fontsize=10)
            ax.set_xlabel(x_label, fontsize=9)
            ax.grid(alpha=0.3)
    figure.tight_layout()
    return _png(figure)


def _class_bars(per_class: dict[str, float | None]) -> str:
    from matplotlib.figure import Figure

    names = [name for name, value in per_class.items() if value is not None]
    values = [per_class[name] for name in names]
    order = sorted(range(len(names)), key=lambda index: values[index])
    height = max(3.0, 0.18 * len(names) + 1)
    figure = Figure(figsize=(8, height))
    ax = figure.subplots()
    ax.barh([names[index] for index in order], [values[index] for index in order], color="#4c72b0")
    ax.set_xlabel("IoU (%)")
    ax.set_xlim(0, 100)
    ax.tick_params(axis="y", labelsize=7 if len(names) > 40 else 9)
    ax.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return _png(figure)


def _table(rows: list[tuple[str, Any]]) -> str:
    cells = []
    for key, value in rows:
        shown = f"{value:.4g}" if isinstance(value, float) and math.isfinite(value) else "-" if value is None else value
        cells.append(f"<tr><th>{html.escape(str(key))}</th><td class=n>{html.escape(str(shown))}</td></tr>")
    return "<table>" + "".join(cells) + "</table>"


def build_report(run_dir: Path) -> str:
    """The HTML of ``run_dir``'s report; needs its ``summary.json`` (a finished or stopped run)."""
    summary_path = run_dir / "summary.json"
    if not summary_path.exists():
        raise ConfigError(f"{run_dir}: no summary.json (not a run folder, or the run has not ended yet)")
    summary = json.loads(summary_path.read_text())
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").exists() else {}
    rows = _rows(run_dir / "metrics.jsonl")
    train = [row for row in rows if "loss" in row]
    val = [row for row in rows if "miou" in row]
    recipe = (config.get("recipe") or {}).get("name") if isinstance(config.get("recipe"), dict) else config.get("recipe")
    parts = [f"<h1>{html.escape(run_dir.name)}</h1>",
             f"<p class=muted>recipe {html.escape(str(recipe or 'custom'))} · data "
             f"{html.escape(str(config.get('data', {}).get('spec', '?')))} · model "
             f"{html.escape(str(config.get('model', {}).get('name', '?')))} "
             f"{html.escape(str(config.get('model', {}).get('backbone', '')))}</p>"]
    parts.append("<h2>Result</h2>" + _table([
        ("final mIoU (%)", summary.get("miou")), ("pixel accuracy (%)", summary.get("pixel_acc")),
        ("mean accuracy (%)", summary.get("mean_acc")), ("mean Dice (%)", summary.get("mean_dice")),
        ("best mIoU (%)", summary.get("best_miou")),
        (f"best {summary.get('best_metric', 'miou')}", summary.get("best_value")),
        ("stopped early", summary.get("stopped_early")),
    ]))
    parts.append("<h2>Curves</h2>" + (_curves(train, val) if train or val else "<p>no rows logged</p>"))
    if isinstance(summary.get("iou"), dict) and summary["iou"]:
        parts.append("<h2>Final per-class IoU</h2>" + _class_bars(summary["iou"]))
    if (run_dir / "confusion.png").exists():
        parts.append("<h2>Confusion matrix</h2>" + _img_tag((run_dir / "confusion.png").read_bytes(), "confusion")
                     + "<p class=muted>counts: confusion.csv</p>")
    steps = sorted((path for path in (run_dir / "samples").glob("step-*") if path.name[5:].isdigit()),
                   key=lambda path: int(path.name[5:]))
    if steps:
        pictures = sorted(steps[-1].glob("sample-*.png"), key=lambda path: (len(path.stem), path.stem))
        images = "".join(_img_tag(path.read_bytes(), path.stem) for path in pictures)
        parts.append(f"<h2>Sample predictions ({steps[-1].name}: image · ground truth · prediction)</h2>"
                     f"<div class=samples>{images}</div>")
    train_s, elapsed = summary.get("train_s"), summary.get("elapsed_s")
    parts.append("<h2>Throughput and timing</h2>" + _table([
        ("steps", summary.get("step")), ("epochs", summary.get("epoch")), ("images seen", summary.get("samples")),
        ("training images/s", summary.get("train_images_per_s")), ("training time (s)", train_s),
        ("wall time (s)", elapsed),
        ("evaluation, checkpoints, logging (s)", elapsed - train_s if elapsed is not None and train_s is not None
         else None),
        ("skipped steps", summary.get("skipped_steps")),
    ]))
    environment = summary.get("environment") or {}
    parts.append("<h2>Environment</h2>" + _table(sorted(environment.items())))
    parts.append(f"<h2>Config</h2><pre>{html.escape(yaml.safe_dump(config, sort_keys=False))}</pre>")
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(run_dir.name)} · segrecipes"
            f"</title><style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>\n")


def write_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.html`` (via a temporary file, so a reader never sees half of it)."""
    path = run_dir / REPORT_NAME
    write_text_atomic(path, build_report(run_dir))
    return path
