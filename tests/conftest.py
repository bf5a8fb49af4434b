"""Shared test fixtures: real data paths (skipped with a reason when absent) and CPU threads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

torch.set_num_threads(2)


def _shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data not found at {path} (a fresh clone has no ../shared/data)")
    return path


@pytest.fixture
def camvid_root() -> Path:
    return _shared("camvid")


@pytest.fixture
def ade20k_root() -> Path:
    return _shared("ade20k_samples")
