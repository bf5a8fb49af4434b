"""``torch_threads``: the thread count of a measurement, and back as it was, also after an error."""

from __future__ import annotations

import pytest
import torch

from segrecipes.bench.threads import torch_threads


def test_the_count_holds_inside_and_is_restored_after_an_error() -> None:
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), torch_threads(1):
        assert torch.get_num_threads() == 1
        raise RuntimeError("the measurement failed")
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
