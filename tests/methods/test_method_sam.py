"""SAM against a manual two-pass computation with torch.func on a tiny fp32 model."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from segrecipes.errors import ConfigError
from segrecipes.methods import SAM, StepContext, StepTools, sam_step
from segrecipes.optim import SGDW

RHO = 0.3


def make_problem(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    inputs = torch.randn(16, 4)
    labels = torch.randint(0, 3, (16,))
    return model, inputs, labels


class GradComputer:
    """The trainer's ``compute_grads``: zero, forward, (scaled) backward; can inject an overflow on a given call."""

    def __init__(self, model, inputs, labels, scaler=None, overflow_on_call: int | None = None):
        self.model, self.inputs, self.labels, self.scaler = model, inputs, labels, scaler
        self.overflow_on_call = overflow_on_call
        self.calls: list[bool] = []

    def __call__(self, sync: bool) -> torch.Tensor:
        self.calls.append(sync)
        self.model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(self.inputs), self.labels)
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        if self.overflow_on_call == len(self.calls):
            self.model[2].weight.grad[0, 0] = float("inf")
        return loss.detach()


def reference_sam_weights(model, inputs, labels, lr, epsilon=1e-12, steps=1, lrs=None):
    """Plain-tensor SAM + plain SGD, written out step by step."""
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    for step in range(steps):
        names = list(weights)

        def loss_at(*values):
            return F.cross_entropy(functional_call(model, dict(zip(names, values)), (inputs,)), labels)

        grads = torch.autograd.grad(loss_at(*[w.requires_grad_() for w in weights.values()]), list(weights.values()))
        norm = torch.sqrt(sum((g**2).sum() for g in grads))
        perturbed = [w.detach() + RHO * g / (norm + epsilon) for w, g in zip(weights.values(), grads)]
        second = torch.autograd.grad(loss_at(*[w.requires_grad_() for w in perturbed]), perturbed)
        step_lr = lr if lrs is None else lrs[step]
        weights = {name: w.detach() - step_lr * g for (name, w), g in zip(weights.items(), second)}
    return weights


def assert_weights(model, expected, atol=1e-6):
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.detach(), expected[name], rtol=0, atol=atol, msg=name)


def test_sam_step_matches_manual_two_pass():
    model, inputs, labels = make_problem()
    expected = reference_sam_weights(copy.deepcopy(model), inputs, labels, lr=0.5)
    with torch.no_grad():
        loss_at_start = F.cross_entropy(model(inputs), labels)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    compute = GradComputer(model, inputs, labels)
    loss, skipped = sam_step(compute, optimizer, RHO)
    assert skipped.dtype == torch.bool and not skipped
    assert compute.calls == [False, True]  # first pass without DDP sync, second with
    torch.testing.assert_close(loss, loss_at_start)  # the reported loss is the one at w, not at w + e
    assert_weights(model, expected)
    # and it really differs from a plain SGD step
    plain, _, _ = make_problem()
    plain_grads = torch.autograd.grad(F.cross_entropy(plain(inputs), labels), list(plain.parameters()))
    assert not torch.allclose(model[0].weight, plain[0].weight.detach() - 0.5 * plain_grads[0], atol=1e-4)


def test_grad_scaler_unscales_before_perturbing():
    model, inputs, labels = make_problem()
    probe = copy.deepcopy(model)
    grads = torch.autograd.grad(F.cross_entropy(probe(inputs), labels), list(probe.parameters()))
    epsilon = torch.sqrt(sum((g**2).sum() for g in grads)).item()  # same size as ||g||: matters only if unscaled
    expected = reference_sam_weights(copy.deepcopy(model), inputs, labels, lr=0.5, epsilon=epsilon)

    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loss, skipped = sam_step(GradComputer(model, inputs, labels, scaler), optimizer, RHO, scaler, epsilon)
    assert not skipped and scaler.get_scale() == 2.0**12
    assert_weights(model, expected, atol=1e-5)


OPTIMIZERS = {
    "sgdw (skips on the device)": lambda params: SGDW(params, lr=0.5, momentum=0.9, weight_decay=0.1),
    "torch sgd (skipped from the host)": lambda params: torch.optim.SGD(params, lr=0.5, momentum=0.9),
}


@pytest.mark.parametrize("make_optimizer", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
@pytest.mark.parametrize("overflow_on_call", [1, 2])
def test_overflow_in_either_pass_skips_and_leaves_weights_exact(overflow_on_call, make_optimizer):
    model, inputs, labels = make_problem()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    optimizer = make_optimizer(model.parameters())
    compute = GradComputer(model, inputs, labels, scaler, overflow_on_call=overflow_on_call)
    _, skipped = sam_step(compute, optimizer, RHO, scaler)
    assert skipped
    assert compute.calls == [False, True]  # decided on the device: the second pass runs, then is discarded
    assert scaler.get_scale() == 2.0**11
    assert not any(torch.count_nonzero(buffer) for state in optimizer.state.values() for buffer in state.values())
    for name, param in model.named_parameters():
        assert torch.equal(param.detach(), before[name]), name


@pytest.mark.parametrize("make_optimizer", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
@pytest.mark.parametrize("overflow_on_call", [1, 2])
def test_without_a_scaler_a_non_finite_pass_skips_the_step_too(overflow_on_call, make_optimizer):
    """Bug: fp32 and bf16 (no grad scaler) SAM stepped into NaN weights and never reported it."""
    model, inputs, labels = make_problem()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = make_optimizer(model.parameters())
    _, skipped = sam_step(GradComputer(model, inputs, labels, overflow_on_call=overflow_on_call), optimizer, RHO)
    assert skipped
    assert not any(torch.count_nonzero(buffer) for state in optimizer.state.values() for buffer in state.values())
    for name, param in model.named_parameters():
        assert torch.equal(param.detach(), before[name]), name


def run_trainer_steps(method: SAM, model, inputs, labels, optimizer, scheduler, steps: int) -> list[float]:
    """The lead's trainer loop: a method's step or a plain one, then the scheduler; returns LRs used."""
    lrs = []
    for step in range(1, steps + 1):
        lrs.append(optimizer.param_groups[0]["lr"])
        compute = GradComputer(model, inputs, labels)
        if method.optimizer_step(StepContext(step, 0, 0.0, model), StepTools(compute, optimizer, None)) is None:
            compute(True)
            optimizer.step()
        scheduler.step()
    return lrs


def test_scheduler_still_drives_lr_across_sam_steps():
    model, inputs, labels = make_problem()
    reference = reference_sam_weights(copy.deepcopy(model), inputs, labels, lr=None, steps=3, lrs=[0.4, 0.2, 0.1])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.4)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    lrs = run_trainer_steps(SAM(RHO, interval=1), model, inputs, labels, optimizer, scheduler, steps=3)
    assert lrs == pytest.approx([0.4, 0.2, 0.1])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    assert_weights(model, reference, atol=1e-5)


def test_interval_leaves_other_steps_to_the_trainer():
    model, inputs, labels = make_problem()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    method = SAM(RHO, interval=2)
    results = []
    for step in (1, 2, 3, 4):
        compute = GradComputer(model, inputs, labels)
        results.append(method.optimizer_step(StepContext(step, 0, 0.0, model), StepTools(compute, optimizer, None)))
    assert results[0] is None and results[2] is None
    assert not results[1].skipped and not results[3].skipped


def test_bad_arguments_are_refused():
    with pytest.raises(ConfigError):
        SAM(rho=0.0)
    with pytest.raises(ConfigError):
        SAM(interval=0)


class AllReducingGradComputer(GradComputer):
    """What DDP does: the synchronized pass averages the gradients over the ranks."""

    def __call__(self, sync: bool) -> torch.Tensor:
        loss = super().__call__(sync)
        if sync:
            for param in self.model.parameters():
                dist.all_reduce(param.grad)
                param.grad /= dist.get_world_size()
        return loss


def _distributed_worker(rank: int, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder}/init", rank=rank, world_size=2)
    model, inputs, labels = make_problem()
    before = [p.detach().clone() for p in model.parameters()]
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    # only rank 0 overflows in the (unsynchronized) first pass
    compute = AllReducingGradComputer(model, inputs, labels, scaler, overflow_on_call=1 if rank == 0 else None)
    _, skipped = sam_step(compute, optimizer, RHO, scaler)
    unchanged = all(torch.equal(p.detach(), b) for p, b in zip(model.parameters(), before))
    torch.save((bool(skipped), unchanged, scaler.get_scale(), len(compute.calls)), f"{folder}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_ranks_agree_on_first_pass_overflow(tmp_path: Path):
    mp.spawn(_distributed_worker, args=(str(tmp_path),), nprocs=2)
    expected = (True, True, 2.0**11, 2)
    assert torch.load(tmp_path / "rank0.pt") == expected
    assert torch.load(tmp_path / "rank1.pt") == expected  # rank 1's own gradients were finite, yet it skipped too
