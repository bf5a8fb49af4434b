"""Build the enabled training methods of a run from its config, in the order the trainer calls them."""

from __future__ import annotations

from segrecipes.config import RunConfig
from segrecipes.engine.hooks import Method
from segrecipes.methods.channels_last import ChannelsLast
from segrecipes.methods.ema import EMA
from segrecipes.methods.mixup import MixUp
from segrecipes.methods.sam import SAM


def build_methods(config: RunConfig, num_classes: int, ignore_index: int) -> list[Method]:
    """One hook per enabled section, in ``config.enabled_methods()`` order (mixup, channels_last, ema, sam).

    No two methods use the same hook in a way that depends on their order: only channels_last changes
    the model, only MixUp the target (its blend keeps the images' memory format), only SAM takes the
    optimizer step and only EMA acts after it.
    """
    builders = {
        "ema": lambda: EMA.from_config(config.ema),
        "channels_last": ChannelsLast,
        "mixup": lambda: MixUp.from_config(config.mixup, num_classes, ignore_index),
        "sam": lambda: SAM.from_config(config.sam),
    }
    return [builders[name]() for name in config.enabled_methods()]
