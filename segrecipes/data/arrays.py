"""Images and masks stored as arrays (``.npy``, ``.tif``/``.tiff``): any number of channels, any dtype.

Multispectral tiles and scientific images rarely fit 8-bit RGB. An array is read as stored, channels
first: a 3-D array whose last axis has ``channels`` entries (and whose first has not) is height x
width x channels, as numpy and most TIFF writers store it; otherwise channels come first, as rasterio
and TorchGeo store it. 8-bit arrays stay uint8; every other dtype becomes float32 with its values kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .errors import DataError

ARRAY_SUFFIXES = (".npy", ".tif", ".tiff")
MAX_MASK_VALUE = (1 << 16) - 1


def is_array_file(path: Path) -> bool:
    return path.suffix.lower() in ARRAY_SUFFIXES


def load_array(path: Path) -> np.ndarray:
    """The stored array of ``path``; a file that cannot be read is a DataError naming it."""
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False)
        import tifffile

        return tifffile.imread(path)
    except ImportError:
        raise DataError(f"{path}: reading TIFF needs tifffile (pip install 'segrecipes[tiff]')") from None
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot read ({str(error).splitlines()[0][:200]})") from None


def array_shape(path: Path) -> tuple[int, ...]:
    """The shape without reading the pixels (the header of a ``.npy``, the first page of a TIFF)."""
    try:
        if path.suffix.lower() == ".npy":
            return tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape)
        import tifffile

        with tifffile.TiffFile(path) as tif:
            return tuple(tif.series[0].shape)
    except ImportError:
        raise DataError(f"{path}: reading TIFF needs tifffile (pip install 'segrecipes[tiff]')") from None
    except (OSError, ValueError, IndexError) as error:
        raise DataError(f"{path}: cannot read ({str(error).splitlines()[0][:200]})") from None


def channels_first(shape: tuple[int, ...], channels: int) -> bool | None:
    """Whether a 3-D ``shape`` is (C, H, W) (True) or (H, W, C) (False); None for a 2-D one."""
    if len(shape) == 2:
        return None
    return not (shape[-1] == channels and shape[0] != channels)


def image_size(shape: tuple[int, ...], channels: int) -> tuple[int, int, int]:
    """(channels, height, width) of an array image of ``shape``."""
    if len(shape) == 2:
        return 1, shape[0], shape[1]
    if len(shape) != 3:
        raise ValueError(f"{len(shape)}-D array")
    c, h, w = shape if channels_first(shape, channels) else (shape[2], shape[0], shape[1])
    return c, h, w


def read_array_image(path: Path, channels: int) -> torch.Tensor:
    """(channels, H, W): uint8 for 8-bit data, float32 for any other dtype."""
    array = load_array(path)
    if array.ndim not in (2, 3):
        raise DataError(f"{path}: a {array.ndim}-D array; images are (H, W), (H, W, C) or (C, H, W)")
    if array.ndim == 2:
        array = array[None]
    elif not channels_first(array.shape, channels):
        array = np.moveaxis(array, -1, 0)
    if array.shape[0] != channels:
        raise DataError(f"{path}: {array.shape[0]} channels but data.in_channels is {channels}")
    if array.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(array))
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise DataError(f"{path}: {array.dtype} pixels; expected integers or floats")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def read_array_mask(path: Path) -> torch.Tensor:
    """The stored values (H, W) of an integer array mask, as int32 (values in 0..65535)."""
    array = load_array(path)
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[-1]):
        array = array.reshape(array.shape[1:] if array.shape[0] == 1 else array.shape[:-1])
    if array.ndim != 2:
        raise DataError(f"{path}: mask of shape {list(array.shape)}; expected a single channel (H, W) of class indices")
    if not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
        raise DataError(f"{path}: {array.dtype} mask; masks hold integer class indices")
    if array.size and (array.min() < 0 or array.max() > MAX_MASK_VALUE):
        raise DataError(f"{path}: mask values outside 0..{MAX_MASK_VALUE}")
    return torch.from_numpy(array.astype(np.int32))
