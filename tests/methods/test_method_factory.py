"""The factory turns config sections into the hooks the trainer calls."""

from __future__ import annotations

import pytest

from segrecipes.config import load_config
from segrecipes.methods.channels_last import ChannelsLast
from segrecipes.methods.ema import EMA
from segrecipes.methods.factory import build_methods
from segrecipes.methods.mixup import MixUp
from segrecipes.methods.sam import SAM


def test_no_methods_by_default():
    assert build_methods(load_config(), num_classes=3, ignore_index=255) == []


def test_every_enabled_section_becomes_a_configured_hook():
    config = load_config(
        methods=["ema", "channels_last", "mixup", "sam"],
        overrides=["ema.half_life=2000", "ema.update_interval=1", "mixup.alpha=0.5", "sam.interval=2"],
    )
    methods = build_methods(config, num_classes=7, ignore_index=0)
    assert [type(m) for m in methods] == [MixUp, ChannelsLast, EMA, SAM]
    mixup, _, ema, sam = methods
    assert ema.smoothing == pytest.approx(2 ** (-1 / 2000)) and ema.update_interval == 1
    assert (mixup.num_classes, mixup.alpha, mixup.ignore_index) == (7, 0.5, 0)
    assert (sam.rho, sam.interval) == (0.3, 2)


@pytest.mark.parametrize("recipe", ["mild", "medium", "hot"])
def test_recipe_presets_build(recipe):
    config = load_config(recipe)
    methods = build_methods(config, num_classes=150, ignore_index=255)
    assert [m.name for m in methods] == config.enabled_methods()
