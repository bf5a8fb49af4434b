"""EMA against the closed form: after updates at steps s_1 < ... < s_n (the copy taken at step 1),
ema = a^n * w_1 + sum_j (1 - a) * a^(n - j) * w_{s_j}."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segrecipes.errors import ConfigError
from segrecipes.functional import compute_ema, warmup_smoothing
from segrecipes.methods import EMA, StepContext


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 2, 1))


def set_weights_for_step(model: nn.Module, step: int) -> dict[str, torch.Tensor]:
    """Stand-in for an optimizer step: give every float tensor new random values (BN stats included)."""
    generator = torch.Generator().manual_seed(1000 + step)
    snapshot = {}
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=True).items():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=generator))
            else:
                tensor.fill_(step)
            snapshot[name] = tensor.detach().double().clone()
    return snapshot


def closed_form(snapshots: dict[int, dict[str, torch.Tensor]], update_steps: list[int], smoothing: float):
    n = len(update_steps)
    expected = {}
    for name, first in snapshots[1].items():
        value = smoothing**n * first
        for j, step in enumerate(update_steps, start=1):
            value = value + (1 - smoothing) * smoothing ** (n - j) * snapshots[step][name]
        expected[name] = value
    return expected


def run_updates(ema: EMA, steps: int) -> tuple[nn.Module, dict[int, dict[str, torch.Tensor]]]:
    """Steps 1..steps of a stand-in training run, each followed by ``ema.update``; the model and every snapshot."""
    model = tiny_model()
    snapshots = {}
    for step in range(1, steps + 1):
        snapshots[step] = set_weights_for_step(model, step)
        ema.update(model, step)
    return model, snapshots


@pytest.mark.parametrize(("interval", "steps", "update_steps"), [(3, 8, [3, 6]), (1, 5, [2, 3, 4, 5])])
def test_ema_matches_closed_form_with_interval_and_buffers(interval, steps, update_steps):
    smoothing = 0.7
    ema = EMA(smoothing=smoothing, update_interval=interval)
    model, snapshots = run_updates(ema, steps)

    expected = closed_form(snapshots, update_steps, smoothing)
    averaged = ema.module.state_dict()
    for name, value in expected.items():
        if name.endswith("num_batches_tracked"):
            # integer buffers are copied at update steps, never averaged
            assert averaged[name].dtype == torch.long
            assert averaged[name].item() == update_steps[-1]
        else:
            torch.testing.assert_close(averaged[name].double(), value, rtol=0, atol=1e-6, msg=name)
    # BN running statistics are among the averaged tensors and differ from the training model's
    assert not torch.allclose(averaged["1.running_mean"], model.state_dict()["1.running_mean"])


def test_copy_starts_after_first_step_and_is_frozen():
    model = tiny_model()
    ema = EMA(smoothing=0.9, update_interval=1)
    context = StepContext(0, 0, 0.0, model)
    assert ema.module is None and ema.eval_model(context, model) is model  # nothing to average before step 1
    first = set_weights_for_step(model, 1)
    ema.after_step(StepContext(1, 0, 0.1, model))  # the trainer's hook is update(context.model, context.step)
    copy = ema.eval_model(context, model)
    assert copy is ema.module
    assert copy is not model and not copy.training
    assert all(not p.requires_grad for p in copy.parameters())
    for name, value in copy.state_dict().items():
        torch.testing.assert_close(value.double(), first[name], rtol=0, atol=0)
    # the copy owns its storage: changing the model later does not change it
    set_weights_for_step(model, 2)
    for name, value in copy.state_dict().items():
        torch.testing.assert_close(value.double(), first[name], rtol=0, atol=0)


class Pair(nn.Module):
    def __init__(self, weight: list[float], mean: list[float], count: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(weight))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(count))


def test_compute_ema_is_a_lerp_of_parameters_and_buffers_towards_the_model():
    ema, model = Pair([1.0, 2.0], [4.0], 1), Pair([3.0, 0.0], [0.0], 7)
    compute_ema(model, ema, smoothing=0.75)  # ema = 0.75 * ema + 0.25 * model
    torch.testing.assert_close(ema.weight.detach(), torch.tensor([1.5, 1.5]))
    torch.testing.assert_close(ema.mean, torch.tensor([3.0], dtype=torch.float64))
    assert ema.count.item() == 7  # integer buffers are copied
    assert model.weight.tolist() == [3.0, 0.0]


def test_smoothing_from_half_life_matches_recipes():
    mild = EMA(half_life=1000, update_interval=10)
    hot = EMA(half_life=2000, update_interval=1)
    assert mild.smoothing == pytest.approx(0.99309, abs=5e-6)
    assert hot.smoothing == pytest.approx(0.99965, abs=5e-6)
    assert mild.update_interval == 10


def test_a_model_given_at_construction_is_copied_at_once_as_timm_does():
    model = tiny_model()
    start = set_weights_for_step(model, 0)
    ema = EMA(model, smoothing=0.5)
    first = set_weights_for_step(model, 1)
    ema.update(model, 1)  # the copy exists: step 1 already averages
    for name, value in ema.module.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value.double(), 0.5 * start[name] + 0.5 * first[name], msg=name)


def test_copy_keeps_channels_last():
    model = tiny_model().to(memory_format=torch.channels_last)
    ema = EMA(smoothing=0.5, update_interval=1)
    set_weights_for_step(model, 1)
    ema.update(model, 1)
    set_weights_for_step(model, 2)
    ema.update(model, 2)
    assert ema.module[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_resume_from_state_dict_continues_exactly():
    smoothing, interval = 0.6, 2
    model = tiny_model()
    uninterrupted = EMA(smoothing=smoothing, update_interval=interval)
    for step in range(1, 8):
        set_weights_for_step(model, step)
        uninterrupted.update(model, step)

    model = tiny_model()
    first_run = EMA(smoothing=smoothing, update_interval=interval)
    for step in range(1, 5):
        set_weights_for_step(model, step)
        first_run.update(model, step)
    checkpoint = first_run.state_dict()
    # the checkpoint holds the averaged weights, not the training weights
    assert not torch.equal(checkpoint["ema_model"]["0.weight"], model.state_dict()["0.weight"])

    resumed = EMA(smoothing=smoothing, update_interval=interval)
    resumed.load_state_dict(checkpoint)
    evaluated = resumed.eval_model(StepContext(4, 0, 0.5, model), model)
    torch.testing.assert_close(evaluated.state_dict()["0.weight"], checkpoint["ema_model"]["0.weight"])
    for step in range(5, 8):
        set_weights_for_step(model, step)
        resumed.update(model, step)
    for name, value in uninterrupted.module.state_dict().items():
        torch.testing.assert_close(resumed.module.state_dict()[name], value, rtol=0, atol=0)


def test_resume_applies_update_on_first_step_seen():
    model = tiny_model()
    ema = EMA(smoothing=0.5, update_interval=1)
    set_weights_for_step(model, 1)
    ema.update(model, 1)
    checkpoint = {"ema_model": {k: v.clone() for k, v in ema.state_dict()["ema_model"].items()}}
    resumed = EMA(smoothing=0.5, update_interval=1)
    resumed.load_state_dict(checkpoint)
    current = set_weights_for_step(model, 2)
    resumed.update(model, 2)
    expected = 0.5 * checkpoint["ema_model"]["0.weight"].double() + 0.5 * current["0.weight"]
    torch.testing.assert_close(resumed.module.state_dict()["0.weight"].double(), expected)


@pytest.mark.parametrize("kwargs", [{"smoothing": 1.0}, {"smoothing": 0.9, "update_interval": 0}, {},
                                    {"smoothing": 0.9, "half_life": 10}, {"half_life": -1}])
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ConfigError):
        EMA(**kwargs)


def warmup_closed_form(snapshots: dict[int, dict[str, torch.Tensor]], update_steps: list[int], smoothing: float):
    """The bias-corrected average: snapshot k (k = 0 the copy at step 1) weighs b^(n-k), normalized."""
    steps = [1, *update_steps]
    n = len(update_steps)
    weights = [smoothing ** (n - k) for k in range(n + 1)]
    total = sum(weights)
    return {name: sum(w * snapshots[step][name] for w, step in zip(weights, steps)) / total
            for name in snapshots[1]}


@pytest.mark.parametrize(("interval", "steps", "update_steps"), [(3, 10, [3, 6, 9]), (1, 6, [2, 3, 4, 5, 6])])
def test_ema_warmup_is_the_normalized_weighted_average_of_every_snapshot(interval, steps, update_steps):
    smoothing = 0.8
    ema = EMA(smoothing=smoothing, update_interval=interval, warmup=True)
    _, snapshots = run_updates(ema, steps)
    expected = warmup_closed_form(snapshots, update_steps, smoothing)
    averaged = ema.module.state_dict()
    for name, value in expected.items():
        if not name.endswith("num_batches_tracked"):
            torch.testing.assert_close(averaged[name].double(), value, rtol=0, atol=1e-6, msg=name)
    # the plain EMA still holds smoothing^n of the random start; the warmup only 1 / sum_k b^k of it
    n = len(update_steps)
    assert ema.updates == n
    plain = closed_form(snapshots, update_steps, smoothing)["0.weight"]
    assert not torch.allclose(plain, expected["0.weight"], atol=1e-3)


def test_warmup_smoothing_hand_computed():
    # b = 0.5: weights after one update 0.5 (copy) and 1 (new) -> the new snapshot gets 1 / 1.5
    assert warmup_smoothing(0.5, 1) == pytest.approx(1 - 1 / 1.5)
    # after two: 0.25, 0.5, 1 -> the new one gets 1 / 1.75
    assert warmup_smoothing(0.5, 2) == pytest.approx(1 - 1 / 1.75)
    assert warmup_smoothing(0.99, 100_000) == pytest.approx(0.99)  # tends to the plain smoothing


def test_warmup_resume_continues_exactly():
    smoothing, interval = 0.7, 2
    model = tiny_model()
    uninterrupted = EMA(smoothing=smoothing, update_interval=interval, warmup=True)
    for step in range(1, 9):
        set_weights_for_step(model, step)
        uninterrupted.update(model, step)
    model = tiny_model()
    first_run = EMA(smoothing=smoothing, update_interval=interval, warmup=True)
    for step in range(1, 5):
        set_weights_for_step(model, step)
        first_run.update(model, step)
    resumed = EMA(smoothing=smoothing, update_interval=interval, warmup=True)
    resumed.load_state_dict(first_run.state_dict())
    assert resumed.updates == 2
    for step in range(5, 9):
        set_weights_for_step(model, step)
        resumed.update(model, step)
    for name, value in uninterrupted.module.state_dict().items():
        torch.testing.assert_close(resumed.module.state_dict()[name], value, rtol=0, atol=0)
