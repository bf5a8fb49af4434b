"""segrecipes' training data pipeline against the reference's (reference_pipeline.py), side by side.

Both make augmented training samples from the same CamVid files, one core each: in the main process,
and through one DataLoader worker (batches of 8). Blocks of samples of the two alternate in a random
order per round; the ratio is the median of the per-round ratios (see segrecipes/bench/interleave.py).
segrecipes' loader keeps freed memory in the processes that decode (segrecipes/data/memory.py): its
worker does so here too, and in the main process the setting helps both pipelines alike.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pipeline_vs_reference.py --data ../shared/data/camvid --crop 512
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from reference_pipeline import ReferencePipeline
from torch.utils.data import DataLoader, Dataset

from segrecipes.bench.interleave import interleaved_seconds
from segrecipes.config import load_config
from segrecipes.data.memory import keep_freed_memory, keep_freed_memory_in_worker
from segrecipes.data.seeds import derive_seed
from segrecipes.run import training_data


class ReferenceDataset(Dataset):
    def __init__(self, pairs: list, crop: int) -> None:
        self.pairs, self.pipeline = pairs, ReferencePipeline(crop, ignore_value=11)  # CamVid's void

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.pairs[index]
        return self.pipeline(str(image), str(mask), derive_seed("reference", index))


class OursByIndex(Dataset):
    """segrecipes' dataset indexed as the trainer's sampler indexes it: (index, sample seed)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dataset[(index, derive_seed("ours", index))]


def _blocks(datasets: dict[str, Dataset], samples: int, workers: int) -> dict:
    """Per pipeline, a callable making ``samples`` samples (in the process, or through one worker)."""
    state = {"start": 0}
    blocks = {}
    for name, dataset in datasets.items():
        if workers == 0:
            def block(dataset=dataset) -> None:
                for index in range(state["start"], state["start"] + samples):
                    dataset[index % len(dataset)]
        else:
            ours = name == "segrecipes"
            loader = DataLoader(dataset, batch_size=8, num_workers=workers, persistent_workers=True,
                                sampler=range(len(dataset)), prefetch_factor=2,
                                worker_init_fn=keep_freed_memory_in_worker if ours else None)
            iterator = {"it": iter(loader)}

            def block(loader=loader, iterator=iterator) -> None:
                for _ in range(samples // 8):
                    try:
                        next(iterator["it"])
                    except StopIteration:
                        iterator["it"] = iter(loader)
                        next(iterator["it"])
            block()  # start the worker
        blocks[name] = block
    return blocks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a CamVid folder (the SegNet layout)")
    parser.add_argument("--crop", type=int, default=512)
    parser.add_argument("--samples", type=int, default=32, help="samples per block")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    keep_freed_memory()  # as segrecipes' loader does in the process that decodes
    config = load_config(overrides=[f"data.spec=camvid:{args.data}", f"data.crop_size={args.crop}"])
    ours = training_data(config)
    datasets = {"segrecipes": OursByIndex(ours), "reference (PIL)": ReferenceDataset(ours.raw.pairs, args.crop)}
    result = {"crop": args.crop, "samples_per_block": args.samples, "rounds": args.rounds,
              "torch": torch.__version__, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    for workers, label in ((0, "main process"), (1, "one DataLoader worker")):
        seconds = interleaved_seconds(_blocks(datasets, args.samples, workers), args.rounds, 1, torch.device("cpu"))
        rates = {name: args.samples / statistics.median(times) for name, times in seconds.items()}
        ratios = [ours_s / theirs for ours_s, theirs in zip(seconds["reference (PIL)"], seconds["segrecipes"])]
        result[label] = {"samples_per_s": rates, "ratio_to_reference": statistics.median(ratios),
                         "ratio_range": [min(ratios), max(ratios)]}
        print(f"{label}: segrecipes {rates['segrecipes']:.1f} samples/s, reference {rates['reference (PIL)']:.1f}, "
              f"ratio {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})", flush=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
