"""The one error type of the data package, so the CLI can report bad data as a one-line message."""

from __future__ import annotations


class DataError(ValueError):
    """A problem with the user's data or data spec; the message names the file, folder or value."""
