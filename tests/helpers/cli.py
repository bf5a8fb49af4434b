"""Running the ``segrecipes`` command in-process, as a user would, and what it printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from segrecipes.cli.main import main


def run_cli(capsys: pytest.CaptureFixture[str], *args: str | Path | int) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``segrecipes ARGS``."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err
