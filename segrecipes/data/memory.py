"""Keep freed memory in the process, so per-sample buffers are not faulted in again for every sample.

glibc hands blocks above its mmap threshold (128 KiB to start, adapting upwards) to and from the
kernel, and returns the top of its heap past the trim threshold: a sample's decoded image, resized
copy and colour-distortion buffers (a few MiB each) were then paged in afresh for every sample, 1,000
to 2,500 minor page faults per 512 x 512 sample, about 2.5 ms on this project's CPUs. With both
thresholds raised, a decoding process reuses the same memory from one sample to the next.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc's largest mmap threshold on 64-bit systems (4 * 1024 * 1024 * sizeof(long))
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20


@functools.cache
def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds in this process (once); False where there is no glibc."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        return False
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def keep_freed_memory_in_worker(worker_id: int) -> None:
    """A DataLoader ``worker_init_fn``: workers started by spawn or forkserver do not inherit the setting."""
    keep_freed_memory()
