"""Parameter groups: the backbone's own learning rate, and no weight decay on norms and biases.

Fine-tuning a pretrained encoder wants a smaller learning rate than the freshly initialized head
(SegFormer trains its head at 10x), and decaying the scale and shift of norm layers or biases only
pulls them towards zero without regularizing anything (timm's and mmseg's ``norm_decay_mult=0``).
"""

from __future__ import annotations

from typing import Any

from torch import nn


def parameter_groups(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    backbone: nn.Module | None = None,
    backbone_lr_mult: float = 1.0,
    norm_weight_decay: float | None = None,
    decay_key: str = "weight_decay",
) -> list[dict[str, Any]]:
    """The trainable parameters of ``model`` in up to four groups (backbone or not, x norm/bias or not).

    Norm weights and biases are the parameters with at most one dimension. ``decay_key`` is the name
    the optimizer reads the decay from (SGDW: ``decoupled_weight_decay``). Each group records its
    ``initial_lr``, which the schedule multiplies."""
    in_backbone = {id(param) for param in backbone.parameters()} if backbone is not None else set()
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for param in model.parameters():
        if param.requires_grad:
            groups.setdefault((id(param) in in_backbone, param.ndim <= 1), []).append(param)
    result = []
    for (is_backbone, is_norm), params in sorted(groups.items()):
        group_lr = lr * (backbone_lr_mult if is_backbone else 1.0)
        decay = norm_weight_decay if is_norm and norm_weight_decay is not None else weight_decay
        result.append({"params": params, "lr": group_lr, "initial_lr": group_lr, decay_key: decay})
    return result
