"""The loss alone at many classes: forward + backward of CE and Dice+CE on index and MixUp targets.

What ``segrecipes bench methods`` sees inside a whole training step, without the model around it: the
time each loss takes on the logits of DeepLabv3+'s output (B, C, H, W), interleaved over rounds, and
the ratio of each to CE on an index target in the same round (median over rounds).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/loss_cost.py --classes 150
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

import torch

from segrecipes.methods import SegmentationLoss
from segrecipes.methods.targets import MixedTarget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=150)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=5, help="forward + backward passes per timing")
    args = parser.parse_args()
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    shape = (args.batch, args.size, args.size)
    logits = torch.randn(args.batch, args.classes, args.size, args.size, generator=generator, requires_grad=True)
    target = torch.randint(0, args.classes, shape, generator=generator)
    target[torch.rand(shape, generator=generator) < 0.05] = 255  # some ignored pixels, as in real masks
    mixed = MixedTarget(target, target[torch.randperm(args.batch, generator=generator)], 0.3)
    ce, dice_ce = SegmentationLoss.named("ce"), SegmentationLoss.named("dice_ce")
    cases = {"CE": (ce, target), "Dice+CE": (dice_ce, target), "MixUp CE": (ce, mixed),
             "MixUp Dice+CE": (dice_ce, mixed)}

    def seconds(loss: SegmentationLoss, labels: torch.Tensor | MixedTarget) -> float:
        start = time.perf_counter()
        for _ in range(args.repeats):
            logits.grad = None
            loss(logits, labels).backward()
        return (time.perf_counter() - start) / args.repeats

    for loss, labels in cases.values():  # warm-up
        seconds(loss, labels)
    rounds = []
    order = list(cases)
    for _ in range(args.rounds):
        random.shuffle(order)
        rounds.append({name: seconds(*cases[name]) for name in order})
    result = {"classes": args.classes, "batch": args.batch, "size": args.size, "rounds": args.rounds,
              "torch": torch.__version__, "ms": {}, "ratio_to_ce": {}}
    for name in cases:
        result["ms"][name] = 1000 * statistics.median(times[name] for times in rounds)
        result["ratio_to_ce"][name] = statistics.median(times[name] / times["CE"] for times in rounds)
        print(f"{name:14s} {result['ms'][name]:7.1f} ms  {result['ratio_to_ce'][name]:.2f}x CE", flush=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
