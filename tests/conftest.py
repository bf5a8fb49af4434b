"""Shared test fixtures: real data paths (skipped with a reason when absent), a private data-check
cache, and CPU threads. Shared helpers live in the ``helpers`` package beside this file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

torch.set_num_threads(2)
# the data-check cache of the whole test session lives in a folder of its own, not in ~/.cache
os.environ["SEGRECIPES_CACHE_DIR"] = tempfile.mkdtemp(prefix="segrecipes-test-cache-")


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
