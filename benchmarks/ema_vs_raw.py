"""What the EMA buys at the end of a run: its averaged weights against the raw training weights.

A run with an EMA saves both in its last checkpoint (``model``: the weights the optimizer moved;
``eval_model``: the average that evaluation and ``best.pt`` use). This scores both on the run's own
validation split, with its own evaluation protocol, and prints one JSON line per run folder:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ema_vs_raw.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from segrecipes.config import build_config
from segrecipes.engine.checkpoint import latest_checkpoint
from segrecipes.evaluation.evaluate import evaluate
from segrecipes.run import build_network, validation_data, weights_normalized


def compare(run_dir: Path) -> dict[str, object]:
    """Validation mIoU of the raw and the averaged weights of ``run_dir``'s newest checkpoint."""
    _, state = latest_checkpoint(run_dir)
    if state.get("eval_model") is None:
        raise SystemExit(f"{run_dir}: its checkpoint holds no averaged model (was the EMA on?)")
    config = weights_normalized(build_config(state["config"], str(run_dir)))
    data = validation_data(config)
    scores: dict[str, object] = {"run": run_dir.name, "step": state["clock"]["step"]}
    for key in ("model", "eval_model"):
        model = build_network(config, len(data.class_names), pretrained=False)
        model.load_state_dict(state[key])
        scores["raw_miou" if key == "model" else "ema_miou"] = evaluate(
            model, data, config.eval, class_names=data.class_names, ignore_index=data.ignore_index,
            device=torch.device("cpu")).miou
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders whose last checkpoint has an EMA")
    for run_dir in parser.parse_args().runs:
        print(json.dumps(compare(run_dir)), flush=True)


if __name__ == "__main__":
    main()
