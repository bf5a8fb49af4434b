"""SGDW against its formula (SPEC §2), and the LR schedules against their closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from segrecipes.config import ScheduleConfig
from segrecipes.engine.optim import SGDW
from segrecipes.engine.schedule import lr_factor, set_lr


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
        torch.testing.assert_close(param.detach(), w, rtol=0, atol=1e-7)


def test_sgdw_decay_does_not_enter_momentum() -> None:
    # zero gradient: only the decay acts, and it must not build up momentum
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = SGDW([param], lr=0.1, momentum=0.9, weight_decay=0.5)
    for step in range(1, 4):
        param.grad = torch.zeros(3)
        optimizer.step()
        torch.testing.assert_close(param.detach(), torch.full((3,), 0.5**step))


@pytest.mark.parametrize("progress", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_schedule_closed_forms(progress: float) -> None:
    cosine = lr_factor(ScheduleConfig(name="cosine"), progress)
    assert math.isclose(cosine, 0.5 * (1 + math.cos(math.pi * progress)), abs_tol=1e-12)
    poly = lr_factor(ScheduleConfig(name="poly", power=0.9), progress)
    assert math.isclose(poly, (1 - progress) ** 0.9, abs_tol=1e-12)
    assert lr_factor(ScheduleConfig(name="constant"), progress) == 1.0


def test_warmup_is_linear_then_schedule_spans_the_rest() -> None:
    cfg = ScheduleConfig(name="cosine")
    assert math.isclose(lr_factor(cfg, 0.05, warmup_progress=0.1), 0.5)
    assert math.isclose(lr_factor(cfg, 0.1, warmup_progress=0.1), 1.0)
    assert math.isclose(lr_factor(cfg, 0.55, warmup_progress=0.1), 0.5, abs_tol=1e-12)
    assert lr_factor(cfg, 1.0, warmup_progress=0.1) == pytest.approx(0.0, abs=1e-12)


def test_set_lr_scales_initial_lr() -> None:
    optimizer = SGDW([torch.nn.Parameter(torch.ones(1))], lr=0.08)
    set_lr(optimizer, 0.25)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.02)
