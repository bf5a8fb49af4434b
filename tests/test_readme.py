"""The README's Python examples run as written."""

from __future__ import annotations

import json
import os
import re
import runpy
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_block_after(heading: str) -> str:
    """The first ```python block of the README section ``heading``."""
    text = README.read_text()
    section = text[text.index(f"## {heading}\n"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_train_your_own_model_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    script = tmp_path / "own_model.py"
    script.write_text(_python_block_after("Train your own model"))
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(script), run_name="__main__")
    first, printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("val mIoU")]
    summary = json.loads((tmp_path / "runs" / "squares" / "summary.json").read_text())
    assert printed == f"val mIoU {summary['miou']:.1f}"
    # the resumed run continued the first one's history: 40 steps, then 20 more
    assert summary["step"] == 60 and [row["step"] for row in summary["history"]] == [20, 40, 60]
    assert first == f"val mIoU {summary['history'][1]['miou']:.1f}"
    assert summary["miou"] > 90  # the squares are brighter than the background: a 2-layer network learns them
    assert os.path.exists(tmp_path / "runs" / "squares" / "checkpoints" / "best.pt")
