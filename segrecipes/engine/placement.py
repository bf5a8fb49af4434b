"""Where the model trains: the methods' ``prepare_model`` (channels_last...), SyncBN, the device, DDP."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from segrecipes.engine.distributed import DistInfo
from segrecipes.errors import ConfigError
from segrecipes.methods.base import Method, StepContext


def placed(model: nn.Module, methods: Sequence[Method], optimizer: torch.optim.Optimizer, sync_bn: bool,
           dist: DistInfo) -> nn.Module:
    """``model`` after the methods' ``prepare_model``, SyncBN under DDP (``sync_bn``), on ``dist``'s device;
    ``optimizer`` must still hold its parameters (a method must not replace them)."""
    for method in methods:
        model = method.prepare_model(StepContext(0, 0, 0.0, model), model)
    if sync_bn and dist.distributed:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    elif sync_bn:
        warnings.warn("train.sync_bn is ignored in a single process", stacklevel=3)
    model = model.to(dist.device)
    own = {id(param) for param in model.parameters()}
    if any(id(param) not in own for group in optimizer.param_groups for param in group["params"]):
        raise ConfigError("the optimizer holds parameters that are not the model's: build it from this "
                          "model's parameters (a method's prepare_model must keep them)")
    return model


def wrapped_for_ranks(model: nn.Module, dist: DistInfo, unused_parameters: bool) -> DistributedDataParallel | None:
    """DDP around ``model`` when there are several ranks (``unused_parameters``: some get no gradient, e.g.
    a frozen backbone), else None."""
    if not dist.distributed:
        return None
    device = dist.device
    return DistributedDataParallel(model, device_ids=None if device.index is None else [device.index],
                                   find_unused_parameters=unused_parameters)
