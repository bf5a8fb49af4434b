"""Images/s of the real training DataLoader (decode + augmentation in workers) for several worker counts,
and where a sample's time goes, stage by stage.

Data loading is a classic bottleneck (SPEC §5): if the loader delivers fewer images/s than the step
consumes, the device waits. The loader is built exactly as the trainer builds it; the first batch is
timed apart, since it includes starting the worker processes. The stage breakdown runs in this
process: decoding (the raw dataset) and each of the transform's stages, on the same samples.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from segrecipes.config import ConfigError
from segrecipes.data.augmented import AugmentedDataset
from segrecipes.data.healing import HealingLoader
from segrecipes.data.loader import build_train_loader
from segrecipes.data.memory import keep_freed_memory
from segrecipes.data.sampler import TrainSampler
from segrecipes.data.seeds import derive_seed


@dataclass
class PipelineReport:
    workers: int
    batch_size: int
    batches: int
    first_batch_s: float
    images_per_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_pipeline(
    dataset: Dataset, workers: list[int], batch_size: int, batches: int, seed: int = 0, pin_memory: bool = True
) -> list[PipelineReport]:
    """For each worker count: the first batch's latency, then images/s over the next ``batches`` batches
    of the training ``dataset`` (as :func:`segrecipes.run.training_data` builds it).

    ``batches`` is capped at what one epoch of the training split holds after the first batch.
    """
    if batch_size < 1 or batches < 1 or not workers or min(workers) < 0:
        raise ConfigError(f"bench data: need batch >= 1, batches >= 1 and worker counts >= 0 "
                          f"(got batch {batch_size}, batches {batches}, workers {workers})")
    sampler = TrainSampler(len(dataset), batch_size, seed=seed)
    timed = min(batches, sampler.batches_per_epoch - 1)
    if timed < 1:
        raise ConfigError(f"bench data: the training split has {len(dataset)} images, too few for two batches "
                          f"of {batch_size}")
    reports = []
    for count in workers:
        loader = HealingLoader(lambda: build_train_loader(dataset, sampler, batch_size, count, pin_memory=pin_memory),
                               sampler)
        start = time.perf_counter()
        iterator = iter(loader)
        next(iterator)
        first = time.perf_counter()
        for _ in range(timed):
            next(iterator)
        end = time.perf_counter()
        del iterator  # shut the workers down before the next count starts its own
        reports.append(PipelineReport(count, batch_size, timed, first - start, timed * batch_size / (end - first)))
    return reports


@dataclass
class StageTimes:
    samples: int
    ms_per_sample: dict[str, float]  # "decode", then the transform's stages in order

    @property
    def total_ms(self) -> float:
        return sum(self.ms_per_sample.values())

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "ms_per_sample": self.ms_per_sample, "total_ms": self.total_ms}


def measure_stages(dataset: AugmentedDataset, samples: int, seed: int = 0) -> StageTimes:
    """Mean ms per sample of decoding and of each transform stage, over ``samples`` samples (after one
    untimed sample), in this process with the current torch thread count."""
    if samples < 1:
        raise ConfigError(f"bench data: need at least one sample for the stage breakdown (got {samples})")
    keep_freed_memory()  # as the training loader does in every process that decodes
    totals: Counter[str] = Counter()
    for number in range(samples + 1):
        index = number % len(dataset)
        generator = torch.Generator().manual_seed(derive_seed("bench-stages", seed, number))
        times = {}
        start = time.perf_counter()
        image, mask = dataset.raw[index]
        times["decode"] = time.perf_counter() - start
        for name, stage in dataset.transform.stages():
            start = time.perf_counter()
            image, mask = stage(image, mask, generator)
            times[name] = time.perf_counter() - start
        if number:  # the first sample warms up the allocator and the decoders
            totals.update(times)
    return StageTimes(samples, {name: 1000 * seconds / samples for name, seconds in totals.items()})
