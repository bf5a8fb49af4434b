"""The trainer built from components: a user's own model and data, exact skipping and retrying, no
host synchronization inside a step, and the refusals that happen when a run is built."""

from __future__ import annotations

import copy
import json
import weakref
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree

from helpers.tiny import tiny_config

from segrecipes import EMA, SAM, SGDW, InferenceOptions, SegmentationLoss, Trainer, TrainSettings
from segrecipes.data import AugmentedDataset, SyntheticShapes, TrainTransform
from segrecipes.errors import ConfigError
from segrecipes.evaluation.evaluate import evaluate
from segrecipes.methods import ChannelsLast, Method, StepContext
from segrecipes.run import build_trainer

CLASSES = 6


class PixelNet(nn.Module):
    """Conv-BN-ReLU, dropout, 1x1 classifier: BatchNorm statistics and dropout's RNG, nothing slow."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.dropout = nn.Dropout2d(0.2)
        self.classifier = nn.Conv2d(8, CLASSES, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(images)))


class RunsOutOfMemoryOnce(PixelNet):
    """Raises CUDA's out-of-memory error on its ``fail_at``-th forward if that forward sees more than 2 images."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.fail_at, self.calls = fail_at, 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.fail_at and len(images) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return super().forward(images)


def _data(size: int = 16, count: int = 16) -> AugmentedDataset:
    return AugmentedDataset(SyntheticShapes(count, size), TrainTransform(size, scale_range=(1.0, 1.0)))


def _trainer(make_model: type[nn.Module] | Callable[[], nn.Module], methods: list[Method] = (),
             **settings) -> Trainer:
    torch.manual_seed(0)
    model = make_model()
    values = {"duration": "4ba", "global_batch_size": 4, "eval_interval": None, "checkpoint_interval": None,
              "progress": "none", **settings}
    return Trainer(model, SegmentationLoss.named("dice_ce"), SGDW(model.parameters(), lr=0.05, momentum=0.9),
                   _data(), TrainSettings(**values), methods=methods)


def _state(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in trainer.model.state_dict().items()}


@pytest.mark.slow
def test_own_model_and_dataset_train_and_evaluate_without_a_config(tmp_path) -> None:
    torch.manual_seed(0)
    model = PixelNet()
    val = SyntheticShapes(4, 16, split="val")
    trainer = Trainer(model, SegmentationLoss.named("dice_ce"), SGDW(model.parameters(), lr=0.05, momentum=0.9),
                      _data(), TrainSettings(duration="6ba", global_batch_size=4, eval_interval="3ba",
                                             checkpoint_interval="3ba", progress="none"),
                      val_data=val, methods=[EMA(half_life=2), SAM(rho=0.05, interval=2), ChannelsLast()],
                      inference=InferenceOptions(size=16), run_dir=tmp_path)
    summary = trainer.fit()
    assert summary["step"] == 6 and [row["step"] for row in summary["history"]] == [3, 6]
    assert list(summary["iou"]) == val.class_names
    ema = trainer.methods[-1]
    assert isinstance(ema, EMA) and trainer.eval_model() is ema.module
    assert summary["miou"] == evaluate(ema.module, val, InferenceOptions(size=16)).miou
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert state["config"] is None and state["clock"]["step"] == 6 and set(state["methods"]) == {"ema", "sam",
                                                                                                 "channels_last"}


class DeviceReadRecorder(TorchFunctionMode):
    """Records every host read (``.item()``, ``bool()``...) of a tensor computed from ``sources``.

    On a GPU the sources (weights, optimizer state, the batch) live on the device, so reading anything
    computed from them waits for the device's queue. Tensors made on the host alone, such as a draw
    from a CPU random generator, are not device work; the recorder follows where values came from
    to tell the two apart on this CPU-only machine."""

    HOST_READS = {"item", "__bool__", "__float__", "__int__", "__index__", "tolist", "numpy"}

    def __init__(self, sources: list[torch.Tensor]) -> None:
        super().__init__()
        self.device_values: dict[int, weakref.ref] = {}
        self.reads: list[str] = []
        for tensor in sources:
            self._track(tensor)

    def _track(self, tensor: torch.Tensor) -> None:
        self.device_values[id(tensor)] = weakref.ref(tensor)

    def _from_device(self, value: object) -> bool:
        if not isinstance(value, torch.Tensor):
            return False
        ref = self.device_values.get(id(value))
        return ref is not None and ref() is value

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        from_device = any(self._from_device(leaf) for leaf in pytree.tree_leaves((args, kwargs)))
        if from_device and getattr(func, "__name__", "") in self.HOST_READS:
            self.reads.append(func.__name__)
        result = func(*args, **kwargs)
        if from_device:
            for leaf in pytree.tree_leaves(result):
                if isinstance(leaf, torch.Tensor):
                    self._track(leaf)
        return result


def _device_state(trainer: Trainer, *batch: torch.Tensor) -> list[torch.Tensor]:
    optimizer_state = [value for state in trainer.optimizer.state.values() for value in state.values()
                       if isinstance(value, torch.Tensor)]
    model = [*trainer.model.parameters(), *trainer.model.buffers()]
    ema = [tensor for method in trainer.methods for tensor in (method.module.state_dict().values()
           if isinstance(method, EMA) and method.module is not None else ())]
    counters = [trainer.skips.streak, trainer.skips.longest, trainer.skips.total]
    return [*model, *optimizer_state, *ema, *counters, *batch]


@pytest.mark.parametrize("methods", [(), ("ema", "mixup", "sam", "channels_last")], ids=["plain", "all-methods"])
def test_a_training_step_reads_nothing_back_from_the_device(methods) -> None:
    trainer = build_trainer(tiny_config("sam.interval=1", "ema.update_interval=1", "loss.name=dice_ce",
                                        methods=methods), run_dir=None)
    images, target = next(iter(trainer.loader))
    trainer.step(images, target)  # the first step sets things up (EMA's copy, momentum buffers)
    recorder = DeviceReadRecorder(_device_state(trainer, images, target))
    with recorder:
        for _ in range(2):
            trainer.step(images, target)
    assert recorder.reads == []
    with recorder:  # and the recorder does see a read where there is one
        trainer.skips.total.item()
    assert recorder.reads == ["item"]


def test_sam_without_a_grad_scaler_skips_a_non_finite_step_and_restores_everything() -> None:
    """Bug: fp32/bf16 SAM stepped with NaN and never counted a bad step."""
    trainer = _trainer(PixelNet, [SAM(rho=0.05)])
    images, target = next(iter(trainer.loader))
    before = _state(trainer)
    result = trainer.step(images.float() * float("nan"), target)
    assert bool(result.skipped) and int(trainer.skips.total) == 1
    after = trainer.model.state_dict()
    for key, value in before.items():  # weights, BatchNorm statistics and their counters as before
        if value.is_floating_point():
            assert torch.equal(after[key], value), key
    assert all(torch.isfinite(buffer).all() for buffer in trainer.optimizer.state_dict()["state"][0].values()
               if isinstance(buffer, torch.Tensor))
    assert not bool(trainer.step(images, target).skipped)  # and the next good step is taken


@pytest.mark.slow
def test_out_of_memory_in_sams_second_pass_retries_exactly_with_half_the_microbatch() -> None:
    """Bug: the retry kept w + e in the weights and the failed attempt's BatchNorm statistics."""
    # forward 1 is SAM's first pass (4 images), forward 2 its second pass: that one runs out of memory
    flaky = _trainer(lambda: RunsOutOfMemoryOnce(fail_at=2), [SAM(rho=0.5)])
    with pytest.warns(UserWarning, match="device microbatch lowered to 2"):
        flaky.fit()
    steady = _trainer(lambda: RunsOutOfMemoryOnce(fail_at=0), [SAM(rho=0.5)], device_microbatch_size=2)
    steady.fit()
    assert flaky.microbatch == 2 and flaky.model.calls > steady.model.calls
    for key, value in steady.model.state_dict().items():
        torch.testing.assert_close(flaky.model.state_dict()[key], value, rtol=0, atol=0, msg=key)


@pytest.mark.slow
def test_out_of_memory_with_a_fixed_microbatch_is_raised_with_what_to_change() -> None:
    trainer = _trainer(lambda: RunsOutOfMemoryOnce(fail_at=1), device_microbatch_size=4)
    with pytest.raises(torch.cuda.OutOfMemoryError) as caught:
        trainer.fit()
    assert "set train.device_microbatch_size lower" in "".join(caught.value.__notes__)


def test_two_methods_that_take_the_optimizer_step_are_refused() -> None:
    class MyStep(Method):
        name = "my_step"

        def optimizer_step(self, context, tools):
            return None

    with pytest.raises(ConfigError, match="sam and my_step both take over the optimizer step"):
        _trainer(PixelNet, [SAM(), MyStep()])
    with pytest.raises(ConfigError, match="ema given more than once"):
        _trainer(PixelNet, [EMA(half_life=2), EMA(half_life=3)])


@pytest.mark.slow
def test_hooks_run_in_the_order_methods_define_and_see_the_same_context() -> None:
    seen: list[tuple[str, str, StepContext]] = []

    class Spy(Method):
        def __init__(self, name: str, order: int) -> None:
            self.name, self.order = name, order

        def transform_batch(self, context, images, target):
            seen.append((self.name, "transform_batch", context))
            return images, target

        def after_step(self, context):
            seen.append((self.name, "after_step", context))

    trainer = _trainer(PixelNet, [Spy("late", 60), Spy("early", 5)], duration="2ba")
    trainer.fit()
    assert [(name, hook) for name, hook, _ in seen[:4]] == [
        ("early", "transform_batch"), ("late", "transform_batch"), ("early", "after_step"), ("late", "after_step")]
    contexts = [context for _, _, context in seen]
    assert len({id(context) for context in contexts[:4]}) == 1  # one context per step, for every hook
    assert [(c.step, c.epoch, c.fraction) for c in contexts[::4]] == [(1, 0, 0.0), (2, 0, 0.5)]
    assert contexts[0].model is trainer.model


def test_an_optimizer_built_for_another_model_is_refused() -> None:
    model = PixelNet()
    with pytest.raises(ConfigError, match="parameters that are not the model's"):
        Trainer(model, SegmentationLoss(), SGDW(PixelNet().parameters(), lr=0.1), _data(), TrainSettings())


@pytest.mark.slow
def test_the_eval_section_drives_the_periodic_evaluation(tmp_path) -> None:
    """Bug: --set eval.tta=flip was accepted and ignored by the evaluation during training."""
    overrides = ("train.duration=1ba", "train.eval_at_start=true")
    plain = build_trainer(tiny_config(*overrides), tmp_path / "plain")
    flipped = build_trainer(tiny_config(*overrides, "eval.tta=flip", "eval.batch_size=3"), tmp_path / "flip")
    assert flipped.inference == InferenceOptions(size=32, tta="flip", batch_size=3)
    untrained = copy.deepcopy(flipped.model)  # the same seed gave both runs the same initial weights
    for trainer in (plain, flipped):
        trainer.fit()
    logged = json.loads((tmp_path / "flip" / "metrics.jsonl").read_text().splitlines()[0])
    assert logged["step"] == 0 and logged["miou"] == flipped.record.history[0]["miou"]
    with_flip = evaluate(untrained, flipped.val_data, InferenceOptions(size=32, tta="flip")).miou
    without = evaluate(untrained, plain.val_data, InferenceOptions(size=32)).miou
    assert flipped.record.history[0]["miou"] == with_flip != without == plain.record.history[0]["miou"]
