"""``segrecipes bench throughput`` and what it is made of: phase attribution, engine overhead, FLOP figures."""

from __future__ import annotations

import json
import time

import pytest
import torch
from helpers.tiny import TINY as TINY_RUN
from torch import nn

from segrecipes.bench.driver import bench_config, bench_trainer, synthetic_batch
from segrecipes.bench.overhead import engine_overhead
from segrecipes.bench.phases import PHASES
from segrecipes.bench.throughput import measure_throughput
from segrecipes.cli.main import main
from segrecipes.config import ConfigError, load_config
from segrecipes.methods import Method, StepContext
from segrecipes.models import build_model
from segrecipes.run import build_trainer

# the tiny run's model; bench_config replaces the data and training settings with the benchmark's own
TINY = [*(override for override in TINY_RUN if override.startswith("model.")), "train.device=cpu"]
SIZE, BATCH = 32, 2


def _trainer_config(*methods: str) -> object:
    return bench_config(load_config(overrides=TINY, methods=list(methods)), SIZE, BATCH)


@pytest.mark.slow
def test_throughput_command_reports_sane_json(capsys) -> None:
    sets = [arg for item in TINY for arg in ("--set", item)]
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "throughput", "--image-size", str(SIZE), "--batch", str(BATCH), "--steps", "4",
              "--warmup", "1", "--channels-last", "--json", *sets])
    assert exit_info.value.code == 0
    result = json.loads(capsys.readouterr().out)
    report, overhead = result["throughput"], result["engine_overhead"]

    assert report["methods"] == ["channels_last"] and report["precision"] == "float32" and report["classes"] == 6
    assert (report["image_size"], report["batch_size"], report["steps"]) == (SIZE, BATCH, 4)
    assert report["images_per_s"] == pytest.approx(1000 * BATCH / report["step_ms"])
    assert set(report["breakdown_ms"]) == set(PHASES)
    for phase in ("forward", "loss", "backward", "optimizer"):
        assert report["breakdown_ms"][phase] > 0, phase
    assert sum(report["breakdown_ms"].values()) == pytest.approx(report["step_ms"], rel=0.05, abs=1.0)
    assert report["peak_memory_mb"] > 0

    # FLOPs: an independent count on a fresh copy of the same model, and the arithmetic that follows from it.
    model = build_model(load_config(overrides=TINY).model, num_classes=6)
    forward = _counted_flops(model)
    assert report["forward_gflops_per_image"] == pytest.approx(forward / 1e9, rel=1e-6)
    assert report["train_gflops_per_image"] == pytest.approx(3 * forward / 1e9, rel=1e-6)
    assert report["achieved_tflops"] == pytest.approx(3 * forward * report["images_per_s"] / 1e12, rel=1e-6)
    assert report["matmul_ceiling_tflops"] > 0
    assert report["utilization"] == pytest.approx(report["achieved_tflops"] / report["matmul_ceiling_tflops"])

    assert overhead["engine_images_per_s"] > 0 and overhead["bare_images_per_s"] > 0
    assert overhead["ratio"] > 0


def _counted_flops(model: nn.Module) -> int:
    """Forward FLOPs of one image by the textbook rule: 2 x multiply-adds of every conv and matmul."""
    total = 0

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kernel = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            total += 2 * output.numel() * kernel

    handles = [module.register_forward_hook(count) for module in model.modules() if isinstance(module, nn.Conv2d)]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, SIZE, SIZE))
    for handle in handles:
        handle.remove()
    return total


class SlowAfterStep(Method):
    """Stands for a method's own work: a known delay after every step."""

    name = "slow_after_step"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def after_step(self, context: StepContext) -> None:
        time.sleep(self.seconds)


@pytest.mark.slow
def test_breakdown_charges_known_delays_to_their_phase() -> None:
    forward_delay, optimizer_delay, method_delay = 0.04, 0.03, 0.05
    config = _trainer_config()
    trainer = build_trainer(config, run_dir=None, extra_methods=[SlowAfterStep(method_delay)])
    # inside the forward (a layer of the model) and inside the optimizer step (post-hooks run in the
    # order they were registered, so this one runs before the probes' closing hook)
    trainer.model.backbone.register_forward_hook(lambda *_: time.sleep(forward_delay))
    trainer.optimizer.register_step_post_hook(lambda *_: time.sleep(optimizer_delay))
    report = measure_throughput(trainer, config, steps=3, warmup=1)
    phases = report.breakdown_ms
    assert phases["forward"] >= 1000 * forward_delay
    assert phases["optimizer"] >= 1000 * optimizer_delay
    assert phases["methods"] >= 1000 * method_delay
    # the delays went nowhere else: the loss of a 32x32 batch takes far less than any of them
    assert phases["loss"] < 1000 * optimizer_delay
    assert phases["data"] < 1000 * optimizer_delay
    assert sum(phases.values()) == pytest.approx(report.step_ms, rel=0.05)


def test_engine_overhead_refuses_runs_with_methods() -> None:
    trainer = bench_trainer(_trainer_config("ema"))
    images, target = synthetic_batch(trainer, SIZE, torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match="ema"):
        engine_overhead(trainer, images, target)


@pytest.mark.parametrize("classes", [6, 150])
def test_synthetic_batch_has_the_trainer_shape_classes_and_some_ignored_pixels(classes: int) -> None:
    config = bench_config(load_config(overrides=[*TINY, f"data.synthetic_num_classes={classes}"]), SIZE, BATCH)
    trainer = bench_trainer(config)
    images, target = synthetic_batch(trainer, SIZE, torch.Generator().manual_seed(0))
    ignore = trainer.ignore_index
    assert len(trainer.class_names) == classes and trainer.model.head.classifier.out_channels == classes
    assert images.dtype == torch.uint8 and images.shape == (BATCH, 3, SIZE, SIZE)
    assert target.shape == (BATCH, SIZE, SIZE)
    labelled = target[target != ignore]
    assert 0 < labelled.numel() < target.numel() and labelled.max() < classes


@pytest.mark.slow
def test_throughput_of_a_recipe_runs_its_methods_on_synthetic_data_without_weights(capsys) -> None:
    sets = [arg for item in TINY for arg in ("--set", item)]
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "throughput", "--recipe", "medium", "--image-size", str(SIZE), "--batch", str(BATCH),
              "--steps", "2", "--warmup", "0", "--json", *sets])
    assert exit_info.value.code == 0
    result = json.loads(capsys.readouterr().out)
    report = result["throughput"]
    assert report["methods"] == ["mixup", "channels_last", "sam", "ema"]  # the hook order
    assert report["loss"] == "CE 0.375 + Dice 1.125"
    assert report["precision"] == "float32"  # the recipe's fp16 applies on a GPU only
    assert result["engine_overhead"] is None  # a bare loop is no comparison for a step with SAM and MixUp


def test_bad_step_counts_are_a_one_line_error(capsys) -> None:
    sets = [arg for item in TINY for arg in ("--set", item)]
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "throughput", "--image-size", str(SIZE), "--batch", str(BATCH), "--steps", "0", *sets])
    assert exit_info.value.code == 2
    assert "--steps" in capsys.readouterr().err


@pytest.mark.slow
def test_methods_command_reports_every_variant_against_the_plain_step(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "methods", "--classes", "150", "--backbone", "resnet18", "--head-channels", "16",
              "--image-size", str(SIZE), "--batch", str(BATCH), "--rounds", "2", "--steps", "10", "--json"])
    assert exit_info.value.code == 0
    result = json.loads(capsys.readouterr().out)
    costs = {cost["name"]: cost for cost in result["costs"]}
    assert result["setting"]["classes"] == 150 and len(costs) == 8
    plain = costs["plain step (CE)"]
    assert plain["ratio"] == plain["ratio_min"] == plain["ratio_max"] == 1.0 and plain["within"] is None
    for name, cost in costs.items():
        assert cost["ratio_min"] <= cost["ratio"] <= cost["ratio_max"] and cost["ms_per_step"] > 0, name
        assert cost["within"] == (cost["ratio"] <= cost["target"]) if cost["target"] else True, name
    # SAM every step runs two forward and backward passes where the plain step runs one
    assert costs["SAM every step"]["ratio"] > 1.5
    # each variant's peak in a process of its own: more than torch's own few hundred MiB, a GiB at most here
    assert result["setting"]["peak_memory_kind"] == "process peak RSS"
    assert all(200 < cost["peak_memory_mb"] < 3000 for cost in costs.values())
    # Bug: every variant reported the parent's resident size at the fork (getrusage's maximum survives exec)
    peaks = [cost["peak_memory_mb"] for cost in costs.values()]
    assert len(set(peaks)) > 1 and costs["SAM every step"]["peak_memory_mb"] >= 0.98 * plain["peak_memory_mb"]


def test_methods_command_needs_whole_blocks_of_ten_steps(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "methods", "--steps", "7"])
    assert exit_info.value.code == 2 and "multiple of 10" in capsys.readouterr().err
