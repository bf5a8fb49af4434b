"""segrecipes: train semantic-segmentation models fast, with the MosaicML DeepLabv3+ recipes.

From Python::

    from segrecipes import EMA, SAM, SegmentationLoss, SGDW, Trainer, TrainSettings

    trainer = Trainer(model, SegmentationLoss.named("dice_ce"), SGDW(model.parameters(), lr=0.01, momentum=0.9),
                      train_dataset, TrainSettings(duration="200ba", global_batch_size=8),
                      methods=[EMA(half_life=50, update_interval=1), SAM(rho=0.05, interval=2)])
    trainer.fit()

or from a preset: ``build_trainer(load_config("mild", overrides=["data.spec=camvid:/data/CamVid"]), "runs/mild")``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from segrecipes.config import RunConfig, load_config
from segrecipes.duration import Duration
from segrecipes.engine.settings import TrainSettings
from segrecipes.engine.trainer import Trainer
from segrecipes.evaluation.options import InferenceOptions
from segrecipes.methods import EMA, SAM, ChannelsLast, Method, MixUp, SegmentationLoss, StepContext
from segrecipes.optim import SGDW, LRSchedule
from segrecipes.run import build_trainer, newest_checkpoint

try:
    __version__ = version("segrecipes")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

__all__ = [
    "EMA",
    "SAM",
    "SGDW",
    "ChannelsLast",
    "Duration",
    "InferenceOptions",
    "LRSchedule",
    "Method",
    "MixUp",
    "RunConfig",
    "SegmentationLoss",
    "StepContext",
    "TrainSettings",
    "Trainer",
    "__version__",
    "build_trainer",
    "load_config",
    "newest_checkpoint",
]
