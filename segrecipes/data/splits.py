"""Exports with one split (CVAT's ``default``, a single COCO JSON): ``data.val_fraction`` of its images
become the validation split.

Each image goes by a seeded hash of its file name, not by a shuffle of the list, so the assignment is
the same on every run and machine and adding images never moves those already assigned. What went
where is written under the cache folder, and ``segrecipes data check`` names that file.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

from segrecipes.cache import cache_folder, fingerprint, write_json
from segrecipes.disk import write_failure

from .errors import DataError
from .files import Listing, Problem

_HASH_RANGE = 1 << 64


def is_validation(name: str, fraction: float, seed: int) -> bool:
    """Whether the image called ``name`` is held out: a uniform draw from its name and the seed."""
    digest = hashlib.sha256(f"{seed}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < fraction * _HASH_RANGE


def split_listing(listing: Listing, source: Path, split: str, fraction: float, seed: int) -> Listing:
    """``split``'s part of the one-split ``listing`` read from ``source``. Without a fraction, train is
    everything and asking for val is an error saying the setting. The listing's problems go with train."""
    if fraction == 0:
        if split == "val":
            raise DataError(f"{source}: the export has one split; set data.val_fraction (e.g. 0.2) to hold out "
                            "validation images")
        return listing
    chosen = {"train": [], "val": []}
    for pair in listing.pairs:
        chosen["val" if is_validation(pair[0].name, fraction, seed) else "train"].append(pair)
    record = cache_folder() / "splits" / f"{fingerprint(f'{source} {fraction} {seed}'.encode(), [source])}.json"
    try:
        write_json(record, {"source": str(source), "val_fraction": fraction, "split_seed": seed,
                            **{name: [str(image) for image, _ in pairs] for name, pairs in chosen.items()}})
    except OSError as error:
        warnings.warn(write_failure("the split assignment", record, error), stacklevel=2)
    note = Problem(str(record), "val-fraction", f"{source.name} is one split: {len(chosen['train'])} train and "
                   f"{len(chosen['val'])} val images by data.val_fraction={fraction}, data.split_seed={seed} "
                   "(the assignment is in this file)", blocks_loading=False, note=True)
    problems = listing.problems if split == "train" else ()
    return Listing(tuple(chosen[split]), (*problems, note), record)
