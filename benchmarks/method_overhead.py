"""Each training method's cost as a ratio to a plain step, measured in one run (a small model on CPU by default).

Every variant is a real Trainer (ResNet-18 DeepLabv3+, same seed, same synthetic batch); blocks of
steps of all variants are interleaved in a random order per round and each round's block times are
divided by that round's plain block, so machine-load drift cancels; the table gives the median ratio
and the range over rounds. Blocks are a multiple of 10 steps, so "EMA every 10 batches" and "SAM
every 2nd step" do their share of work in every block.

    .venv/bin/python benchmarks/method_overhead.py             # R-18 OS16, 8 x 128x128, 6 rounds of 10 steps
    .venv/bin/python benchmarks/method_overhead.py --threads 1 # on a machine shared with other jobs
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import time

import torch

from segrecipes.bench.driver import bench_config, bench_trainer, engine_step, synthetic_batch
from segrecipes.bench.interleave import interleaved_seconds
from segrecipes.bench.throughput import device_name
from segrecipes.config import load_config

PLAIN = "plain step (CE)"
# name -> (method switches, overrides, target ratio to the plain step)
VARIANTS: dict[str, tuple[list[str], list[str], float | None]] = {
    PLAIN: ([], [], None),
    "EMA every 10 batches": (["ema"], ["ema.update_interval=10"], 1.02),
    "EMA every batch": (["ema"], ["ema.update_interval=1"], 1.08),
    "Dice+CE": (["dice"], [], 1.10),
    "MixUp": (["mixup"], [], 1.05),
    "SAM every 2nd step": (["sam"], ["sam.interval=2"], 1.55),
    "SAM every step": (["sam"], ["sam.interval=1"], 2.05),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--output-stride", type=int, default=16, help="8 (the reference) costs ~3x more on CPU")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=10, help="steps per block (keep a multiple of 10)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda (then e.g. --set train.precision=bf16)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="extra section.key=value")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    base = [f"model.backbone={args.backbone}", f"model.output_stride={args.output_stride}",
            f"train.device={args.device}", *args.sets]
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        steps = {}
        for name, (methods, overrides, _) in VARIANTS.items():
            config = bench_config(load_config(None, None, [*base, *overrides], methods), args.image_size, args.batch)
            trainer = stack.enter_context(bench_trainer(config))
            batch = synthetic_batch(trainer, torch.Generator().manual_seed(0))  # the same batch for every variant
            steps[name] = functools.partial(engine_step, trainer, *batch)
            for _ in range(args.steps):  # warm-up, and EMA's first copy; keeps blocks aligned to 10 steps
                steps[name]()
        device = trainer.device
        seconds = interleaved_seconds(steps, args.rounds, args.steps, device)

    plain = seconds[PLAIN]
    print(f"DeepLabv3+ {args.backbone} OS{args.output_stride}, {args.batch} x {args.image_size}x{args.image_size}, "
          f"{device_name(device)}, torch {torch.__version__}; {args.rounds} rounds of {args.steps} steps "
          f"per variant, {time.perf_counter() - started:.0f} s in all\n")
    print("| method | ms/step (median) | ratio to plain (median) | range over rounds | target | within |")
    print("|---|---|---|---|---|---|")
    for name, (_, _, target) in VARIANTS.items():
        ratios = [mine / theirs for mine, theirs in zip(seconds[name], plain)]
        ratio = statistics.median(ratios)
        ms = 1000 * statistics.median(seconds[name]) / args.steps
        within = "-" if target is None else ("yes" if ratio <= target else "NO")
        print(f"| {name} | {ms:.0f} | {ratio:.3f}x | {min(ratios):.3f}-{max(ratios):.3f} | "
              f"{'-' if target is None else f'<= {target:.2f}x'} | {within} |")


if __name__ == "__main__":
    main()
