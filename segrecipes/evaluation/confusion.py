"""The confusion matrix of an evaluation as files a person reads: counts as CSV with the class
names, and a row-normalized heatmap beside the largest confusions (readable at ADE20k's 150 classes,
where a heatmap alone is a blur)."""

from __future__ import annotations

from pathlib import Path

import torch

from segrecipes.cache import write_csv
from segrecipes.evaluation.metrics import SegMetrics

CSV_NAME, PNG_NAME = "confusion.csv", "confusion.png"
CORNER = "true \\ predicted"


def top_confusions(metrics: SegMetrics, count: int = 15) -> list[tuple[str, str, float]]:
    """The ``count`` largest off-diagonal shares: (true class, predicted class, % of the true class's pixels)."""
    shares = _row_normalized(_counts(metrics))
    shares.fill_diagonal_(0)
    values, flat = shares.flatten().topk(min(count, shares.numel()))
    classes = len(metrics.class_names)
    return [(metrics.class_names[int(index) // classes], metrics.class_names[int(index) % classes], float(value))
            for value, index in zip(values, flat) if value > 0]


def write_confusion(metrics: SegMetrics, directory: Path) -> dict[str, Path]:
    """Write ``confusion.csv`` (counts, rows = true class) and ``confusion.png`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"csv": directory / CSV_NAME, "png": directory / PNG_NAME}
    counts = _counts(metrics)
    write_csv(paths["csv"], [[CORNER, *metrics.class_names],
                             *([name, *row] for name, row in zip(metrics.class_names, counts.tolist()))])
    plot_confusion(metrics, paths["png"])
    return paths


def plot_confusion(metrics: SegMetrics, path: Path, listed: int = 15) -> None:
    """Row-normalized heatmap (each true class's pixels sum to 100%), the largest confusions listed beside."""
    from matplotlib.figure import Figure  # imported here: matplotlib is slow to import for every command

    names = metrics.class_names
    shares = _row_normalized(_counts(metrics))
    figure = Figure(figsize=(11, 7))
    heat, text = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    image = heat.imshow(shares.numpy(), cmap="viridis", vmin=0, vmax=100, interpolation="nearest")
    figure.colorbar(image, ax=heat, fraction=0.046, pad=0.04, label="% of the true class's pixels")
    if len(names) <= 40:
        heat.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        heat.set_yticks(range(len(names)), names, fontsize=7)
    heat.set_xlabel("predicted class")
    heat.set_ylabel("true class")
    heat.set_title(f"confusion matrix, row-normalized (mIoU {metrics.miou:.2f})")
    text.axis("off")
    lines = [f"{share:5.1f}%  {true} -> {predicted}" for true, predicted, share in top_confusions(metrics, listed)]
    text.text(0, 1, "largest confusions\n\n" + ("\n".join(lines) or "none"), va="top", family="monospace",
              fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def _counts(metrics: SegMetrics) -> torch.Tensor:
    if metrics.confusion is None:
        raise ValueError("these metrics carry no confusion matrix (built without ConfusionMatrix.compute)")
    return metrics.confusion


def _row_normalized(counts: torch.Tensor) -> torch.Tensor:
    totals = counts.sum(dim=1, keepdim=True).double()
    return torch.where(totals > 0, counts.double() / totals.clamp(min=1) * 100, torch.zeros((), dtype=torch.float64))
