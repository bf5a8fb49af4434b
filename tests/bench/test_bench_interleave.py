"""Interleaved timing: every alternative once per round, in a changing order; ratios within a round."""

from __future__ import annotations

import pytest
import torch

from segrecipes.bench.interleave import interleaved_seconds, median_ratio


def test_every_block_runs_its_steps_once_per_round_in_changing_orders() -> None:
    calls: list[str] = []
    blocks = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    seconds = interleaved_seconds(blocks, rounds=6, steps=2, device=torch.device("cpu"), seed=1)
    assert {name: len(times) for name, times in seconds.items()} == {"a": 6, "b": 6, "c": 6}
    rounds = [calls[index:index + 6] for index in range(0, len(calls), 6)]
    assert len(rounds) == 6
    orders = set()
    for names in rounds:
        assert sorted(names) == ["a", "a", "b", "b", "c", "c"]
        assert names[0::2] == names[1::2]  # a block's steps run back to back
        orders.add(tuple(names[0::2]))
    assert len(orders) > 1


def test_median_ratio_is_the_median_of_per_round_ratios() -> None:
    # rounds where the machine slowed both alternatives alike keep the ratio; the outlier round is dropped
    assert median_ratio([1.1, 2.2, 5.0], [1.0, 2.0, 1.0]) == pytest.approx(1.1)
    with pytest.raises(ValueError):
        median_ratio([1.0], [1.0, 2.0])
