"""The one error type of the deploy package, so the CLI reports bad input as a one-line message."""

from __future__ import annotations


class DeployError(ValueError):
    """A model file, image or export option that cannot be used; the message names the file or value."""
