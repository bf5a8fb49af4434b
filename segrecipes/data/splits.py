"""Exports with one split (CVAT's ``default``, a single COCO JSON): ``data.val_fraction`` of its images
become the validation split.

The images are ranked by a seeded hash of their file names, not shuffled, and the first
``round(fraction * n)`` (at least one) are held out: the same images on every run and machine, the
count exact even for a few images, and adding an image moves at most one of those already held out.
What went where is written under the cache folder (and into a run's folder); ``data check`` names it.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

from segrecipes.cache import cache_folder, fingerprint, write_json
from segrecipes.disk import write_failure

from .errors import DataError
from .files import Listing, Problem


SPLITS = ("train", "val")


def rank_key(name: str, seed: int) -> bytes:
    """Where the image called ``name`` ranks for ``seed``: a uniform draw from its name and the seed."""
    return hashlib.sha256(f"{seed}\0{name}".encode()).digest()


def split_listing(listing: Listing, source: Path, split: str, fraction: float, seed: int) -> Listing:
    """``split``'s part of the one-split ``listing`` read from ``source``. Without a fraction, train is
    everything and asking for val is an error saying the setting. The listing's problems (and a note naming
    the record) go with train."""
    if fraction == 0:
        if split == "val":
            raise DataError(f"{source}: the export has one split; set data.val_fraction (e.g. 0.2) to hold out "
                            "validation images")
        return listing
    held = max(1, round(fraction * len(listing.pairs)))
    if listing.pairs and held >= len(listing.pairs):
        raise DataError(f"{source}: data.val_fraction={fraction} of {len(listing.pairs)} images leaves none to train "
                        "on; lower it")
    held_out = set(sorted(listing.pairs, key=lambda pair: rank_key(pair[0].name, seed))[:held])
    chosen = {name: [pair for pair in listing.pairs if (pair in held_out) == (name == "val")] for name in SPLITS}
    record = cache_folder() / "splits" / f"{fingerprint(f'{source} {fraction} {seed}'.encode(), [source])}.json"
    try:
        write_json(record, {"source": str(source), "val_fraction": fraction, "split_seed": seed,
                            **{name: [str(image) for image, _ in pairs] for name, pairs in chosen.items()}})
    except OSError as error:
        warnings.warn(write_failure("the split assignment", record, error), stacklevel=2)
    note = Problem(str(record), "val-fraction", f"{source.name} is one split: {len(chosen['train'])} train and "
                   f"{len(chosen['val'])} val images by data.val_fraction={fraction}, data.split_seed={seed} "
                   "(the assignment is in this file)", blocks_loading=False, note=True)
    problems = (*listing.problems, note) if split == "train" else ()
    return Listing(tuple(chosen[split]), problems, record)
