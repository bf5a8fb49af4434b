"""Mixed precision: which autocast dtype a run uses, and whether it needs a grad scaler."""

from __future__ import annotations

import torch


def amp_dtype_for(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: bf16/fp16 on GPU when asked (``auto`` means bf16), always fp32 (None) on CPU."""
    if device.type != "cuda" or precision == "fp32":
        return None
    return torch.float16 if precision == "fp16" else torch.bfloat16


def grad_scaler_for(amp_dtype: torch.dtype | None, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16 needs loss scaling to keep small gradients from flushing to zero; bf16 and fp32 do not."""
    return torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
