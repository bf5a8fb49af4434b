"""Optional packages of the deploy formats: imported when a format is used, refused in one line naming the
extra that installs them."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import DeployError


def require(package: str, extra: str, purpose: str) -> ModuleType:
    """``package`` imported, or a :class:`DeployError` saying ``pip install "segrecipes[extra]"``."""
    try:
        return importlib.import_module(package)
    except ImportError:
        raise DeployError(f'{purpose} needs the {package!r} package: pip install "segrecipes[{extra}]"') from None
