"""Stable seeds derived from several parts (base seed, epoch, split, index...).

Python's ``hash`` is salted per process, so a cryptographic digest is used instead: the same parts
give the same seed in every worker, on every rank and after a resume.
"""

from __future__ import annotations

import hashlib


def derive_seed(*parts: int | str) -> int:
    """A non-negative 63-bit seed that is a function of ``parts`` only."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
