"""Processes that decode keep their freed memory: buffers of a few MiB are not paged in again per sample."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# In a fresh process: page faults of 40 "samples" that each fill and free a 6 MiB buffer and a 3 MiB
# one (a float image and its uint8 copy), before and after keep_freed_memory().
_SCRIPT = """
import json, resource, torch
from segrecipes.data.memory import keep_freed_memory
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(40):
        big = torch.ones(6 << 18)
        small = torch.ones(3 << 18)
        del big, small
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
without = faults()
kept = keep_freed_memory()
faults()
print(json.dumps({"without": without, "kept": kept, "with": faults()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_buffers_are_reused_without_page_faults() -> None:
    result = json.loads(subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True,
                                       check=True).stdout)
    assert result["kept"]
    assert result["with"] < 200 < result["without"]  # a 6 MiB buffer is 1,536 pages
