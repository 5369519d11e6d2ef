"""Training targets: a world pose (GT or P-GT) normalised into every view's heatmap space
(docs/design.md, eqs. 4-8)."""

from __future__ import annotations

import torch
from torch import Tensor

from pose3d.geometry import HeatmapSpace, heatmap_to_world, world_to_heatmap


def pose_targets(joints3d: Tensor, has_joints3d: Tensor, pgt: Tensor,
                 has_pgt: Tensor) -> tuple[Tensor, Tensor]:
    """The world pose to learn from per tuple: GT where present, else P-GT.

    joints3d, pgt [B, J, 3] world mm; has_joints3d, has_pgt [B] bool.
    Returns (target [B, J, 3] world mm, has_target [B] bool).
    """
    if joints3d.shape != pgt.shape or joints3d.shape[-1:] != (3,) or joints3d.dim() != 3:
        raise ValueError(f"joints3d and pgt must both be [B, J, 3], got {list(joints3d.shape)} "
                         f"and {list(pgt.shape)}")
    if has_joints3d.shape != joints3d.shape[:1] or has_pgt.shape != joints3d.shape[:1]:
        raise ValueError(f"has_joints3d and has_pgt must be [{joints3d.shape[0]}], got "
                         f"{list(has_joints3d.shape)} and {list(has_pgt.shape)}")
    has_gt = has_joints3d.bool()
    target = torch.where(has_gt[:, None, None], joints3d, pgt)
    return target, has_gt | has_pgt.bool()


def heatmap_targets(joints_world: Tensor, K: Tensor, R: Tensor, t: Tensor, space: HeatmapSpace,
                    valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """World pose [B, J, 3] mm -> per-view targets (coords [B, V, J, 3] voxels, root_depth
    [B, V] camera mm) for cameras K [B, V, 3, 3], R [B, V, 3, 3], t [B, V, 3].

    Computed in float32 (float64 for float64 input) outside autocast. Views marked invalid by
    `valid` [B, V], views whose root is not in front of the camera and views with a
    non-finite projection get zeros, root depth included (mask them in the losses).
    """
    if joints_world.dim() != 3 or joints_world.shape[-1] != 3:
        raise ValueError(f"joints_world must have shape [B, J, 3], got "
                         f"{list(joints_world.shape)}")
    if K.dim() != 4 or K.shape[0] != joints_world.shape[0]:
        raise ValueError(f"K must have shape [B, V, 3, 3] with B = {joints_world.shape[0]}, "
                         f"got {list(K.shape)}")
    dtype = torch.promote_types(joints_world.dtype, torch.float32)  # float64 stays float64
    with torch.autocast(joints_world.device.type, enabled=False):
        coords, root_depth = world_to_heatmap(joints_world.to(dtype)[:, None], K.to(dtype),
                                              R.to(dtype), t.to(dtype), space)
    ok = torch.isfinite(coords).all(dim=-1).all(dim=-1) & (root_depth > 0)
    if valid is not None:
        ok = ok & valid.bool()
    coords = torch.where(ok[..., None, None], coords, torch.zeros_like(coords))
    return coords, torch.where(ok, root_depth, torch.zeros_like(root_depth))


def prediction_to_world(pred_coords: Tensor, target_world: Tensor, K: Tensor, R: Tensor,
                        t: Tensor, space: HeatmapSpace, valid: Tensor | None = None
                        ) -> tuple[Tensor, Tensor]:
    """Each view's prediction back in world mm through Π, placed at the root depth the
    target pose has in that view (a single view does not observe absolute depth; L_mv and
    the root-aligned metrics do not depend on it).

    pred_coords [B, V, J, 3] voxels; target_world [B, J, 3] world mm; cameras as in
    `heatmap_targets`. Returns (world [B, V, J, 3] mm, root_depth [B, V] camera mm, 0 where
    the view is invalid or the target's root is not in front of it). float32, outside
    autocast.
    """
    with torch.autocast(pred_coords.device.type, enabled=False):
        K, R, t = K.float(), R.float(), t.float()
        _, root_depth = heatmap_targets(target_world.float(), K, R, t, space, valid)
        return heatmap_to_world(pred_coords.float(), root_depth, K, R, t, space), root_depth
