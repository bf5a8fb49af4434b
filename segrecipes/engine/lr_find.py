"""The learning-rate range test on a real :class:`~segrecipes.engine.trainer.Trainer`: the run's own
step (its methods, microbatches, precision, DDP) at a learning rate that grows every step.

Each step emulates a run at that step's rate: every parameter group's rate and its ``initial_lr`` are
set to the rate times the group's share of the base rate, so SGDW's decay (``lr_t / lr_0 * wd``) is the
decay of a run at that rate. Under torchrun every rank takes the steps; the test stops when any rank's
loss diverges, and rank 0's suggestion is the one every rank returns.
"""

from __future__ import annotations

from collections.abc import Callable

from segrecipes.engine.distributed import agreed_max, gathered
from segrecipes.engine.trainer import Trainer
from segrecipes.optim.lr_find import LRCurve, RangeTest, add_loss


def range_test(trainer: Trainer, test: RangeTest = RangeTest(),
               progress: Callable[[int, float, float], None] | None = None) -> tuple[LRCurve, float]:
    """Run ``test`` on ``trainer`` (whose weights and optimizer it changes: use a trainer built for it);
    returns this rank's curve and rank 0's suggested learning rate. ``progress(step, lr, loss)`` after
    each step."""
    base = trainer.optimizer.defaults["lr"]  # the optimizer's rate; a group's own (a backbone's) is a share of it
    shares = [group["lr"] / base for group in trainer.optimizer.param_groups]
    trainer.lr_schedule = lambda fraction: 1.0  # the rates are set below, step by step
    curve = LRCurve()
    while True:  # epoch after epoch, until the test ends
        for images, target in trainer._batches():
            lr = test.lr_at(len(curve.lrs))
            for group, share in zip(trainer.optimizer.param_groups, shares):
                group["lr"] = group["initial_lr"] = lr * share
            loss = float(trainer.step(images, target).loss)
            stop = add_loss(curve, lr, loss, test)
            if progress is not None:
                progress(len(curve.lrs), lr, loss)
            if agreed_max([float(stop or len(curve.lrs) == test.steps)])[0]:
                return curve, gathered(curve.suggestion)[0]
