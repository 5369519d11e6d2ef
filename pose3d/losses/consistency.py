"""L_mv: the multi-view consistency loss (docs/design.md, eq. 9).

For a tuple seen by C valid views, every view's prediction is mapped to world mm by Π_c
(with that view's root depth from GT or P-GT) and

    L_mv = 1 / (C (C - 1)) * sum_c sum_{c' != c} || Π_c(Ĵ_c) - Π_c'(Ĵ_c') ||_1,

the L1 norm taken over the whole pose (all J joints, x, y, z), in world millimetres. The
batch value is the mean over tuples with C >= 2. The loss is exact eq. 9; any scaling to
match L_pose (mean voxel error per coordinate) belongs in its weight λ2: one voxel of depth
is S / D mm (31.25 mm for 2000 / 64) and the norm sums 3 J values, so
λ2 ≈ λ1 * D / (3 J S) weighs both alike.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pose3d.geometry import HeatmapSpace, heatmap_to_world


def multiview_consistency_loss(pred_coords: Tensor, root_depth: Tensor, K: Tensor, R: Tensor,
                               t: Tensor, valid: Tensor, space: HeatmapSpace) -> Tensor:
    """Eq. 9, mean over tuples, world mm.

    pred_coords [B, V, J, 3] heatmap voxels; root_depth [B, V] camera mm; K [B, V, 3, 3],
    R [B, V, 3, 3], t [B, V, 3]; valid [B, V] bool. Invariant to the order of the views.
    Tuples with fewer than 2 valid views contribute nothing; a batch without any gives 0
    (with a gradient path to pred_coords).
    """
    world, valid = views_to_world(pred_coords, root_depth, K, R, t, valid, space)
    return pairwise_l1(world, valid)


def views_to_world(pred_coords: Tensor, root_depth: Tensor, K: Tensor, R: Tensor, t: Tensor,
                   valid: Tensor, space: HeatmapSpace) -> tuple[Tensor, Tensor]:
    """Π of every view: (world [B, V, J, 3] mm, valid [B, V] bool), in float32 (float64 for
    float64 input) outside autocast; invalid views hold a harmless finite pose."""
    _check_inputs(pred_coords, root_depth, K, R, t, valid)
    valid = valid.bool()
    dtype = torch.promote_types(pred_coords.dtype, torch.float32)  # float64 stays float64
    with torch.autocast(pred_coords.device.type, enabled=False):
        inputs = (x.to(dtype) for x in (pred_coords, root_depth, K, R, t))
        return heatmap_to_world(*_sanitised(*inputs, valid), space), valid


def pairwise_l1(world: Tensor, valid: Tensor) -> Tensor:
    """Eq. 9's sum for poses already in a common frame: world [B, V, J, 3], valid [B, V].
    Mean over tuples with >= 2 valid views of the mean over ordered pairs of the pose's L1."""
    v = valid.shape[1]
    pairs = valid[:, :, None] & valid[:, None, :] & ~torch.eye(v, dtype=torch.bool,
                                                               device=valid.device)
    dist = (world[:, :, None] - world[:, None, :]).abs().sum(dim=(-1, -2))  # [B, V, V]
    dist = torch.where(pairs, dist, torch.zeros_like(dist))
    num_pairs = pairs.sum(dim=(1, 2))
    per_tuple = dist.sum(dim=(1, 2)) / num_pairs.clamp_min(1)
    num_tuples = (num_pairs > 0).sum()
    return per_tuple.sum() / num_tuples.clamp_min(1)


def _sanitised(coords: Tensor, root_depth: Tensor, K: Tensor, R: Tensor, t: Tensor,
               valid: Tensor) -> tuple[Tensor, ...]:
    """Replace invalid views by a harmless camera and pose, so that neither the forward nor
    the backward pass meets a division by zero (0 * inf would leak NaN into valid views)."""
    eye = torch.eye(3, dtype=K.dtype, device=K.device).expand_as(K)
    v4, v3, v2 = valid[..., None, None], valid[..., None], valid
    return (torch.where(v4, coords, torch.zeros_like(coords)),
            torch.where(v2, root_depth, torch.full_like(root_depth, 1000.0)),
            torch.where(v4, K, eye), torch.where(v4, R, eye),
            torch.where(v3, t, torch.zeros_like(t)))


def _check_inputs(pred_coords: Tensor, root_depth: Tensor, K: Tensor, R: Tensor, t: Tensor,
                  valid: Tensor) -> None:
    if not isinstance(pred_coords, Tensor) or pred_coords.dim() != 4 or \
            pred_coords.shape[-1] != 3:
        got = list(pred_coords.shape) if isinstance(pred_coords, Tensor) else type(pred_coords)
        raise ValueError(f"pred_coords must have shape [B, V, J, 3], got {got}")
    b, v = pred_coords.shape[:2]
    for name, x, tail in (("root_depth", root_depth, ()), ("K", K, (3, 3)), ("R", R, (3, 3)),
                          ("t", t, (3,)), ("valid", valid, ())):
        if not isinstance(x, Tensor) or tuple(x.shape) != (b, v, *tail):
            got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name} must have shape {[b, v, *tail]} to match pred_coords, "
                             f"got {got}")
