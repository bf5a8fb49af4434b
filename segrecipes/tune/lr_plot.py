"""The range test's figure: the loss against the learning rate, raw and smoothed, and the suggestion."""

from __future__ import annotations

from pathlib import Path

from segrecipes.bench.figure import new_figure, save_figure
from segrecipes.optim.lr_find import SUGGESTION_RULE, LRCurve


def write_lr_plot(curve: LRCurve, path: Path, title: str) -> None:
    """``path`` (PNG): the loss of each step (faint), its smoothed curve, the learning rate where it is
    lowest and the suggested one, on a log axis of learning rates."""
    figure, axes, colours = new_figure()
    axes.plot(curve.lrs, curve.losses, color=colours[0], alpha=0.3, label="loss of each step")
    axes.plot(curve.lrs, curve.smoothed, color=colours[0], label="smoothed loss")
    lowest = curve.to_dict()["lr_at_min_loss"]
    axes.axvline(lowest, color=colours[1], linestyle=":", label=f"lowest smoothed loss at {lowest:.3g}")
    axes.axvline(curve.suggestion, color=colours[2], linestyle="--", label=f"suggested {curve.suggestion:g}")
    axes.set_xscale("log")
    finite = [value for value in curve.smoothed if value < float("inf")]
    if finite:  # the exploding end would flatten the rest of the curve
        axes.set_ylim(min(finite) * 0.9, max(finite[0], min(finite)) * 1.5 + 1e-12)
    axes.set_title(f"{title}\nsuggestion: {SUGGESTION_RULE}", fontsize="small")
    save_figure(figure, axes, path, "learning rate", "training loss")
