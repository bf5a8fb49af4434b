"""The error that means "this setting cannot be used", shared by every layer.

It lives at the bottom of the package, below the config, so that methods, models and the engine can
refuse a bad argument with it without importing the config (or pydantic); the CLI turns it into a
one-line message and exit code 2.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting or argument that cannot be used, with a message fit for one line on the console."""


def one_line(error: BaseException) -> str:
    """The message itself, also when a DataLoader worker wrapped it in a remote traceback."""
    message = str(error).strip()
    if "Original Traceback" in message:
        message = message.splitlines()[-1]
        message = message.split(": ", 1)[1] if ": " in message else message
    return message
