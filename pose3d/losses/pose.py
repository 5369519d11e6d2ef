"""L_pose: L1 between predicted and target joints in heatmap space (docs/design.md,
section 2, Losses)."""

from __future__ import annotations

import torch
from torch import Tensor


def pose_loss(pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """Weighted mean absolute error per coordinate, heatmap voxels.

    pred, target [..., J, 3] voxels (target from GT for labeled samples, P-GT for unlabeled
    ones); weight [...] (per sample, e.g. [B, V] = valid view and target present) or
    [..., J] (per joint), bool or float. Entries of weight 0 contribute nothing, even where
    the target is NaN; all-zero weights give 0 with a gradient path.
    """
    _check_pair("pred", pred, "target", target)
    if weight is None:
        return (pred - target).abs().mean()
    w = _joint_weights(weight, pred.shape[:-1])
    # Mask the inputs, not the error: NaN in a masked target would make abs()'s zero
    # gradient NaN.
    keep = (w > 0).unsqueeze(-1)
    pred = torch.where(keep, pred, torch.zeros_like(pred))
    target = torch.where(keep, target, torch.zeros_like(target))
    err = (pred - target).abs().mean(dim=-1)  # [..., J]
    return (err * w).sum() / w.sum().clamp_min(1e-6)


def _check_pair(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    for name, x in ((name_a, a), (name_b, b)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 2 or x.shape[-1] != 3:
            raise ValueError(f"{name} must have shape [..., J, 3], got {list(x.shape)}")
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got "
                         f"{list(a.shape)} and {list(b.shape)}")


def _joint_weights(weight: Tensor, shape: torch.Size) -> Tensor:
    """weight [...] or [..., J] -> float weights [..., J]."""
    if not isinstance(weight, Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    if weight.shape == shape[:-1]:
        weight = weight.unsqueeze(-1)
    elif weight.shape != shape:
        raise ValueError(f"weight must have shape {list(shape[:-1])} (per sample) or "
                         f"{list(shape)} (per joint), got {list(weight.shape)}")
    return weight.to(torch.float32).expand(shape)
