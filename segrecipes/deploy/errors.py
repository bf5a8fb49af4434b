"""The error types of the deploy package, so the CLI reports bad input as a one-line message (exit 2) and a
failed export check as one with its numbers (exit 1)."""

from __future__ import annotations


class DeployError(ValueError):
    """A model file, image or export option that cannot be used; the message names the file or value."""


class ExportCheckFailed(DeployError):
    """An export written as asked that computes something else than the PyTorch model (logits beyond the
    tolerance, or mIoU dropped by more than allowed): not bad input, so the CLI exits 1, keeping the file."""
