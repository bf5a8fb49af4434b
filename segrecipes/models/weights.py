"""Backbone weights from a local file, or torchvision's published files through the torch hub cache.

A torchvision weights name (``IMAGENET1K_V2``) is read from ``torch.hub.get_dir()/checkpoints``, as
torchvision keeps it, and downloaded there when missing: verified against the SHA-256 prefix in the
file name before it is renamed into place, so the cache never holds a partial or tampered file. Under
torch.distributed one process per machine downloads while the others wait. ``SEGRECIPES_OFFLINE=1``
never touches the network (a missing file is an error that says where to put it) and
``SEGRECIPES_WEIGHTS_MIRROR=URL`` fetches the same file names from ``URL/<file name>``.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from timm.models import adapt_input_conv
from torch import nn
from torchvision.models import get_model_weights

from segrecipes.fetch import TIMEOUT_S, FetchError, fetch_into, file_digests

WEIGHT_FILE_SUFFIXES = (".pth", ".pt", ".safetensors")
# Keys of a classification checkpoint that a feature extractor has no use for.
CLASSIFIER_PREFIXES = ("fc.",)
OFFLINE_ENV = "SEGRECIPES_OFFLINE"
MIRROR_ENV = "SEGRECIPES_WEIGHTS_MIRROR"
# How long a silent server is waited for; a module constant so that tests can shorten it.
DOWNLOAD_TIMEOUT_S = TIMEOUT_S
# torchvision's (and torch.hub's) file names end in "-<first hex digits of the file's SHA-256>.<suffix>".
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.")
_WRAPPER_KEYS = ("state_dict", "model")
_OPTIONAL_KEY_SUFFIX = "num_batches_tracked"
_SHOWN_KEYS = 3
_RGB = 3


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


def offline() -> bool:
    """``SEGRECIPES_OFFLINE`` set to 1 (or true/yes/on): never download."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def checkpoints_dir() -> Path:
    """torchvision's cache folder, ``$TORCH_HOME/hub/checkpoints`` unless torch.hub says otherwise."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def is_torchvision_weights(arch: str, weights_name: str) -> bool:
    """Whether torchvision publishes weights ``weights_name`` for ``arch``."""
    try:
        return weights_name in get_model_weights(arch).__members__
    except (ValueError, KeyError):
        return False


def hub_weights_url(arch: str, weights_name: str) -> str:
    """torchvision's URL for ``arch``'s ``weights_name`` (e.g. resnet101, IMAGENET1K_V2)."""
    try:
        weights_enum = get_model_weights(arch)
    except (ValueError, KeyError):
        raise ModelError(f"model.weights: torchvision has no weights for {arch!r}") from None
    try:
        return weights_enum[weights_name].url
    except KeyError:
        names = ", ".join(weights_enum.__members__)
        raise ModelError(
            f"model.weights: unknown weights {weights_name!r} for {arch} (use a file path or one of: {names})"
        ) from None


def hub_checkpoint_path(arch: str, weights_name: str) -> Path:
    """Where torchvision keeps ``arch``'s ``weights_name`` file."""
    return checkpoints_dir() / os.path.basename(hub_weights_url(arch, weights_name))


def read_hub_state_dict(arch: str, weights_name: str) -> dict[str, torch.Tensor]:
    """The torchvision checkpoint from the hub cache, downloaded first when it is not there."""
    return read_state_dict_file(ensure_hub_checkpoint(arch, weights_name))


def ensure_hub_checkpoint(arch: str, weights_name: str, progress: bool | None = None) -> Path:
    """The cached file of ``arch``'s ``weights_name``, downloaded (or refused, offline) when missing."""
    url = hub_weights_url(arch, weights_name)
    path = checkpoints_dir() / os.path.basename(url)
    if not path.is_file() and offline():
        raise ModelError(
            f"model.weights: {arch} {weights_name} is not in the local torch hub cache; "
            f"downloads are disabled ({OFFLINE_ENV}=1), copy {path.name} to {path}"
        )
    return download_checkpoint(url, path, progress)


def download_checkpoint(url: str, path: Path, progress: bool | None = None) -> Path:
    """``path``, downloaded from ``url`` (or its mirror) unless it is there; under torch.distributed
    local rank 0 downloads while the other ranks wait at a barrier, so no two processes race."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    if not distributed:
        return path if path.is_file() else _download_verified(mirrored(url), path, progress)
    failure = None
    if int(os.environ.get("LOCAL_RANK", torch.distributed.get_rank())) == 0 and not path.is_file():
        try:
            _download_verified(mirrored(url), path, progress)
        except ModelError as error:  # the other ranks still wait at the barrier: reach it first
            failure = error
    torch.distributed.barrier()
    if failure is not None:
        raise failure
    if not path.is_file():
        raise ModelError(f"model.weights: {path}: not there after local rank 0 downloaded it from {mirrored(url)}")
    return path


def mirrored(url: str) -> str:
    """``url``, or the same file name under ``SEGRECIPES_WEIGHTS_MIRROR`` when that is set."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    return f"{mirror.rstrip('/')}/{os.path.basename(url)}" if mirror else url


def _download_verified(url: str, path: Path, progress: bool | None) -> Path:
    """Download into a temporary file beside ``path`` and rename it only once its hash matches the name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(handle)
    part = Path(temporary)
    try:
        fetch_into(url, part, sys.stderr.isatty() if progress is None else progress, DOWNLOAD_TIMEOUT_S, path.name)
        if hash_status(part, path.name) == "mismatch":
            raise ModelError(f"model.weights: {url}: the download's SHA-256 does not start with "
                             f"{name_hash(path.name)} as {path.name} says; nothing was saved")
        os.replace(part, path)
    except FetchError as error:
        raise ModelError(f"model.weights: {error}; nothing was saved to {path.parent}") from None
    finally:
        part.unlink(missing_ok=True)
    return path


def name_hash(file_name: str) -> str | None:
    """The SHA-256 prefix a torchvision-style file name carries (``resnet101-cd907fc2.pth``), if any."""
    match = _HASH_IN_NAME.search(file_name)
    return match.group(1) if match else None


HashStatus = Literal["verified", "mismatch", "no hash in name"]


def hash_status(path: Path, file_name: str | None = None) -> HashStatus:
    """Whether ``path``'s SHA-256 starts with the prefix in ``file_name`` (default: its own name)."""
    prefix = name_hash(file_name or path.name)
    if prefix is None:
        return "no hash in name"
    return "verified" if file_digests(path, {"sha256"})["sha256"].startswith(prefix) else "mismatch"


@dataclass(frozen=True)
class CachedCheckpoint:
    """A file of the hub cache's checkpoints folder, for ``segrecipes weights list``."""

    path: Path
    size: int
    status: HashStatus


def cached_checkpoints() -> list[CachedCheckpoint]:
    """The weight files in the hub cache, by name, each checked against the hash in its name."""
    folder = checkpoints_dir()
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")) if folder.is_dir() else []
    return [CachedCheckpoint(path, path.stat().st_size, hash_status(path)) for path in files]


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
    RGB weights of the first convolution are adapted to a model with other input channels as timm does.
    """
    state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIXES)}
    expected = module.state_dict()
    state = _adapt_first_conv(state, expected)
    missing = [k for k in expected if k not in state and not k.endswith(_OPTIONAL_KEY_SUFFIX)]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [k for k, v in state.items() if k in expected and expected[k].shape != v.shape]
    problems = {"missing keys": missing, "unexpected keys": unexpected, "shape mismatch for": wrong_shape}
    for problem, keys in problems.items():
        if keys:
            raise ModelError(f"model.weights: {source}: {problem} {_first(keys)}")
    module.load_state_dict(state)


def _adapt_first_conv(state: dict[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with the first convolution's RGB kernel spread over the model's input channels
    (timm's ``adapt_input_conv``) when that is the only difference; other keys are left to the checks."""
    key = next((k for k, v in expected.items() if v.ndim == 4), None)
    if key is None or key not in state or state[key].ndim != 4:
        return state
    have, want = state[key].shape, expected[key].shape
    if have[1] == _RGB and want[1] != _RGB and (have[0], *have[2:]) == (want[0], *want[2:]):
        return {**state, key: adapt_input_conv(want[1], state[key])}
    return state


def _first(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS])
    more = f" (+{len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else ""
    return shown + more
