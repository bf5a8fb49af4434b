"""SGDW against its formula (SPEC §2), the device-side skip of a non-finite step, and the LR schedules
against their closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from segrecipes.optim import SGDW, LRSchedule, nonfinite, optimizer_step, set_lr


def test_sgdw_matches_formula_over_steps_with_changing_lr() -> None:
    torch.manual_seed(0)
    w0 = torch.randn(5)
    grads = [torch.randn(5) for _ in range(4)]
    lrs = [0.08, 0.06, 0.03, 0.0]
    param = torch.nn.Parameter(w0.clone())
    optimizer = SGDW([param], lr=0.08, momentum=0.9, weight_decay=5e-2)
    # hand-written reference: p *= 1 - (lr_t/lr_0)*wd ; buf = m*buf + g ; p -= lr_t * buf
    w, buf = w0.clone(), None
    for grad, lr in zip(grads, lrs):
        optimizer.param_groups[0]["lr"] = lr
        param.grad = grad.clone()
        optimizer.step()
        w = w * (1 - lr / 0.08 * 5e-2)
        buf = grad.clone() if buf is None else 0.9 * buf + grad
        w = w - lr * buf
        # within 2 ulp of fp32 around 1: the fused kernel rounds a multiply-add once, the formula twice
        torch.testing.assert_close(param.detach(), w, rtol=0, atol=2.5e-7)


def test_sgdw_decay_does_not_enter_momentum() -> None:
    # zero gradient: only the decay acts, and it must not build up momentum
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = SGDW([param], lr=0.1, momentum=0.9, weight_decay=0.5)
    for step in range(1, 4):
        param.grad = torch.zeros(3)
        optimizer.step()
        torch.testing.assert_close(param.detach(), torch.full((3,), 0.5**step))


def test_coupled_weight_decay_is_torch_sgd_l2() -> None:
    # g' = g + wd * p enters momentum: after one step p = p0 - lr * (g + wd * p0)
    param = torch.nn.Parameter(torch.tensor([2.0, -1.0]))
    optimizer = SGDW([param], lr=0.1, momentum=0.9, coupled_weight_decay=0.5)
    param.grad = torch.tensor([1.0, 1.0])
    optimizer.step()
    torch.testing.assert_close(param.detach(), torch.tensor([2.0 - 0.1 * (1 + 1.0), -1.0 - 0.1 * (1 - 0.5)]))


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(6, generator=generator)) for _ in range(2)]


@pytest.mark.parametrize("first_step_bad", [True, False], ids=["first-step", "later-step"])
def test_a_non_finite_step_is_skipped_on_the_device_and_changes_nothing(first_step_bad: bool) -> None:
    params = _params()
    optimizer = SGDW(params, lr=0.1, momentum=0.9, weight_decay=0.1)
    reference = _params()
    plain = SGDW(reference, lr=0.1, momentum=0.9, weight_decay=0.1)
    steps = [torch.full((6,), 0.5), torch.full((6,), -0.25), torch.full((6,), 1.0)]
    bad_at = 0 if first_step_bad else 1
    for index, grad in enumerate(steps):
        for param in params:
            param.grad = grad.clone()
        if index == bad_at:
            params[1].grad[2] = float("nan")
        skipped = optimizer_step(optimizer)
        assert skipped.dtype == torch.bool and bool(skipped) == (index == bad_at)
        if index != bad_at:  # the reference never saw the bad step at all
            for param in reference:
                param.grad = grad.clone()
            plain.step()
    for mine, theirs in zip(params, reference):
        torch.testing.assert_close(mine.detach(), theirs.detach(), rtol=0, atol=1e-7)
        assert torch.isfinite(optimizer.state[mine]["momentum_buffer"]).all()


def test_torch_fused_sgd_keeps_garbage_after_a_skipped_first_step() -> None:
    """Why SGDW starts its momentum at zero: torch's fused kernel leaves the buffer uninitialized."""
    params = _params()
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9, fused=True)
    for param in params:
        param.grad = torch.ones(6)
    optimizer.found_inf, optimizer.grad_scale = torch.ones(()), None
    optimizer.step()
    mine = _params()
    ours = SGDW(mine, lr=0.1, momentum=0.9)
    for param in mine:
        param.grad = torch.ones(6)
    ours.found_inf, ours.grad_scale = torch.ones(()), None
    ours.step()
    assert all(torch.equal(ours.state[param]["momentum_buffer"], torch.zeros(6)) for param in mine)


def test_an_optimizer_without_a_device_skip_is_skipped_from_the_host() -> None:
    params = _params()
    optimizer = torch.optim.SGD(params, lr=0.1)  # foreach, not fused: ignores found_inf
    before = [param.detach().clone() for param in params]
    for param in params:
        param.grad = torch.full((6,), float("inf"))
    assert bool(optimizer_step(optimizer))
    assert all(torch.equal(param.detach(), old) for param, old in zip(params, before))


def test_found_inf_is_an_extra_reason_to_skip() -> None:
    params = _params()
    optimizer = SGDW(params, lr=0.1)
    before = [param.detach().clone() for param in params]
    for param in params:
        param.grad = torch.ones(6)
    assert bool(optimizer_step(optimizer, found_inf=torch.ones(())))
    assert all(torch.equal(param.detach(), old) for param, old in zip(params, before))
    assert not bool(optimizer_step(optimizer, found_inf=torch.zeros(())))
    assert not torch.equal(params[0].detach(), before[0])


def test_with_a_grad_scaler_the_scaler_decides_and_backs_off() -> None:
    params = _params()
    optimizer = SGDW(params, lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    before = [param.detach().clone() for param in params]
    scaler.scale(sum(param.sum() for param in params)).backward()
    assert bool(optimizer_step(optimizer, scaler, found_inf=torch.ones(())))  # forced overflow
    assert scaler.get_scale() == 2.0 and all(torch.equal(p.detach(), b) for p, b in zip(params, before))
    optimizer.zero_grad()
    scaler.scale(sum(param.sum() for param in params)).backward()
    assert not bool(optimizer_step(optimizer, scaler))
    # unscaled gradient of sum(p) is 1: p = p0 - lr * 1
    torch.testing.assert_close(params[0].detach(), before[0] - 0.1)


def test_nonfinite_flags_inf_and_nan() -> None:
    assert nonfinite([torch.ones(3), torch.zeros(2)]).item() == 0.0
    assert nonfinite([torch.ones(3), torch.tensor([float("nan")])]).item() == 1.0
    assert nonfinite([torch.tensor([-float("inf")])]).item() == 1.0


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_schedule_closed_forms(fraction: float) -> None:
    assert math.isclose(LRSchedule("cosine")(fraction), 0.5 * (1 + math.cos(math.pi * fraction)), abs_tol=1e-12)
    assert math.isclose(LRSchedule("poly", power=0.9)(fraction), (1 - fraction) ** 0.9, abs_tol=1e-12)
    assert LRSchedule("constant")(fraction) == 1.0


def test_warmup_is_linear_then_schedule_spans_the_rest() -> None:
    schedule = LRSchedule("cosine", warmup=0.1)
    assert math.isclose(schedule(0.05), 0.5)
    assert math.isclose(schedule(0.1), 1.0)
    assert math.isclose(schedule(0.55), 0.5, abs_tol=1e-12)
    assert schedule(1.0) == pytest.approx(0.0, abs=1e-12)


def test_set_lr_scales_initial_lr() -> None:
    optimizer = SGDW([torch.nn.Parameter(torch.ones(1))], lr=0.08)
    set_lr(optimizer, 0.25)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.02)
    plain = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.5)  # no initial_lr yet: it is recorded
    set_lr(plain, 0.5)
    set_lr(plain, 0.5)
    assert plain.param_groups[0]["lr"] == pytest.approx(0.25)
