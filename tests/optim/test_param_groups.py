"""Parameter groups (backbone learning rate, no decay on norms and biases), the frozen backbone and the
SegFormer preset, checked against what each setting means."""

from __future__ import annotations

import pytest
import torch
from helpers.tiny import tiny_config

from segrecipes.models.parts import backbone_of
from segrecipes.run import build_optimizer, build_trainer


def test_groups_follow_backbone_lr_mult_and_norm_weight_decay() -> None:
    config = tiny_config("optimizer.backbone_lr_mult=0.1", "optimizer.norm_weight_decay=0", "optimizer.lr=0.02",
                         "optimizer.weight_decay=1e-4")
    trainer = build_trainer(config, None)
    backbone = {id(p) for p in backbone_of(trainer.model).parameters()}
    for group in trainer.optimizer.param_groups:
        in_backbone = {id(p) in backbone for p in group["params"]}
        norms = {p.ndim <= 1 for p in group["params"]}
        assert len(in_backbone) == len(norms) == 1  # each group is one kind of parameter
        assert group["initial_lr"] == pytest.approx(0.002 if in_backbone == {True} else 0.02)
        assert group["decoupled_weight_decay"] == (0.0 if norms == {True} else 1e-4)
    grouped = sum(len(group["params"]) for group in trainer.optimizer.param_groups)
    assert grouped == len(list(trainer.model.parameters())) and len(trainer.optimizer.param_groups) == 4


def test_a_decoupled_decay_step_uses_each_groups_own_learning_rate() -> None:
    """SGDW decays by lr_t / lr_0 * wd of the group: with a zero gradient one step shrinks p by exactly that."""
    config = tiny_config("optimizer.backbone_lr_mult=0.5", "optimizer.weight_decay=0.1", "optimizer.momentum=0")
    model = torch.nn.Module()
    model.backbone, model.head = torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(2, 2, bias=False)
    optimizer = build_optimizer(config.optimizer, model)
    for param in model.parameters():
        param.grad = torch.zeros_like(param)
    before = [p.detach().clone() for p in (model.backbone.weight, model.head.weight)]
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * 0.5  # half-way down a schedule: lr_t / lr_0 = 0.5 in both groups
    optimizer.step()
    for param, old in zip((model.backbone.weight, model.head.weight), before):
        assert torch.allclose(param, old * (1 - 0.5 * 0.1))


def _backbone_state(trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in backbone_of(trainer.model).state_dict().items()}


def test_a_frozen_backbone_keeps_its_weights_and_statistics_then_trains() -> None:
    frozen = build_trainer(tiny_config("model.freeze_backbone=3ba", "train.duration=3ba"), None)
    start, head = _backbone_state(frozen), {k: v.clone() for k, v in frozen.model.head.state_dict().items()}
    frozen.fit()
    after = _backbone_state(frozen)
    assert all(torch.equal(start[k], after[k]) for k in start)  # weights and BatchNorm running statistics
    assert any(not torch.equal(head[k], v) for k, v in frozen.model.head.state_dict().items())
    released = build_trainer(tiny_config("model.freeze_backbone=2ba", "train.duration=4ba"), None)
    start = _backbone_state(released)
    released.fit()
    assert any(not torch.equal(start[k], v) for k, v in _backbone_state(released).items())
    assert all(p.requires_grad for p in released.model.parameters())


def test_segformer_preset_builds_its_optimizer_and_trains() -> None:
    config = tiny_config("model.backbone=mit_b0", "model.weights=null", "train.duration=2ba", recipe="segformer")
    assert config.optimizer.name == "adamw" and config.schedule.name == "poly"
    trainer = build_trainer(config, None)
    encoder = {id(p) for p in backbone_of(trainer.model).parameters()}
    lrs = {id(p) in encoder: group["initial_lr"] for group in trainer.optimizer.param_groups for p in group["params"]}
    assert lrs[True] == pytest.approx(0.1 * lrs[False])
    assert trainer.fit()["step"] == 2
