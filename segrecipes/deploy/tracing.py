"""Tracing a segmentation model for export, and the input sizes an export is checked on.

Both ONNX (the TorchScript-based exporter) and TorchScript files are made by tracing one example
forward. Tracing records a model's shape arithmetic but freezes its Python branches, so the
example has a height and width that are no multiple of 32 (smp models pad such inputs: the
padding branch is recorded) and every export is checked against eager PyTorch on two *other*
sizes and batch sizes. That check is what makes the tracer's warnings safe to silence.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch

from segrecipes.data.normalize import normalize

Shape = tuple[int, int, int]  # batch, height, width of an input

# The traced example: odd multiples of 4, so that no branch on "divisible by 8/16/32" is taken
# the easy way.
TRACE_EXAMPLE_SHAPE: Shape = (1, 100, 76)


def example_input(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Normalized images of random uint8 pixels: the value range a deployed model really sees."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (batch, 3, height, width), generator=generator, dtype=torch.uint8)
    return normalize(pixels)


def check_shapes(eval_size: int) -> tuple[Shape, Shape]:
    """Two shapes an export must reproduce: a landscape image at the
    protocol size and a batch of two portrait ones, neither equal to the traced example."""
    long_side = eval_size * 4 // 3 + 1
    return (1, eval_size, long_side), (2, long_side, eval_size)


@contextlib.contextmanager
def quiet_tracing() -> Iterator[None]:
    """Silence, around tracing, exporting and loading only, the tracer's warnings (the check on
    other sizes verifies what they warn about) and the deprecation notices of torch.jit and of the
    TorchScript-based ONNX exporter (chosen on purpose, see :mod:`segrecipes.deploy.onnx_format`)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit.*deprecated")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        yield
