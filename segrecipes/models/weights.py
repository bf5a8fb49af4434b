"""Backbone weights from the local torch hub cache or a local file — never from the network.

Training machines are often offline, and a silent multi-hundred-megabyte download in the middle of a
launch is worse than a clear error that says where to put the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from torchvision.models import get_model_weights

WEIGHT_FILE_SUFFIXES = (".pth", ".pt", ".safetensors")
# Keys of a classification checkpoint that a feature extractor has no use for.
CLASSIFIER_PREFIXES = ("fc.",)
_WRAPPER_KEYS = ("state_dict", "model")
_OPTIONAL_KEY_SUFFIX = "num_batches_tracked"
_SHOWN_KEYS = 3


class ModelError(ValueError):
    """A model that cannot be built as asked: bad name, missing or mismatched weights."""


def is_weight_file(weights: str) -> bool:
    """A weights string names a file when it has a weight-file suffix or a directory part."""
    return weights.endswith(WEIGHT_FILE_SUFFIXES) or os.sep in weights or "/" in weights


def read_weights(weights: str, arch: str) -> dict[str, torch.Tensor]:
    """``weights`` as a local file path, or as a torchvision weights name for ``arch`` from the hub cache."""
    if is_weight_file(weights):
        return read_state_dict_file(weights)
    return read_hub_state_dict(arch, weights)


def hub_checkpoint_path(arch: str, weights_name: str) -> Path:
    """Where torchvision keeps ``arch``'s ``weights_name`` file (e.g. resnet101, IMAGENET1K_V2)."""
    try:
        weights_enum = get_model_weights(arch)
    except (ValueError, KeyError):
        raise ModelError(f"model.weights: torchvision has no weights for {arch!r}") from None
    try:
        entry = weights_enum[weights_name]
    except KeyError:
        names = ", ".join(weights_enum.__members__)
        raise ModelError(
            f"model.weights: unknown weights {weights_name!r} for {arch} (use a file path or one of: {names})"
        ) from None
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(entry.url)


def read_hub_state_dict(arch: str, weights_name: str) -> dict[str, torch.Tensor]:
    """The cached torchvision checkpoint; a missing file is an error that names the path to fill."""
    path = hub_checkpoint_path(arch, weights_name)
    if not path.is_file():
        raise ModelError(
            f"model.weights: {arch} {weights_name} is not in the local torch hub cache; "
            f"downloads are disabled, copy {path.name} to {path}"
        )
    return read_state_dict_file(path)


def read_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.pth``/``.pt`` (weights only) or ``.safetensors``, unwrapped if nested."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model.weights: file not found: {path}")
    if path.suffix not in WEIGHT_FILE_SUFFIXES:
        raise ModelError(f"model.weights: {path}: expected one of {', '.join(WEIGHT_FILE_SUFFIXES)}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and safetensors each raise their own types
        raise ModelError(f"model.weights: {path}: not a readable weights file ({type(error).__name__})") from None
    for key in _WRAPPER_KEYS:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"model.weights: {path}: does not hold a state dict of tensors")
    return dict(state)


def load_weights(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy ``state`` into ``module`` exactly: every key must match in name and shape.

    Classifier keys (``fc.*``) are dropped first. A missing ``num_batches_tracked`` is allowed:
    BatchNorm fills it in, so files saved before that buffer existed (torchvision's V1) still load.
    """
    state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIXES)}
    expected = module.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith(_OPTIONAL_KEY_SUFFIX)]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [k for k, v in state.items() if k in expected and expected[k].shape != v.shape]
    problems = {"missing keys": missing, "unexpected keys": unexpected, "shape mismatch for": wrong_shape}
    for problem, keys in problems.items():
        if keys:
            raise ModelError(f"model.weights: {source}: {problem} {_first(keys)}")
    module.load_state_dict(state)


def _first(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS])
    more = f" (+{len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else ""
    return shown + more
