"""Consistency terms that cannot be lowered by shrinking the poses.

Eq. 9 (docs/design.md) compares the views' absolute poses in millimetres, so pulling every
joint toward the root lowers it without making any view more right: consistency alone admits
degenerate solutions. Two remedies, each a pure function of the same inputs as eq. 9 plus
the tuple's target pose (GT or P-GT, world mm):

    scale_normalised_consistency_loss
        eq. 9 on root-relative poses, each view's pose rescaled to the target's size (its
        Frobenius norm about the root) before the views are compared: invariant to the scale
        of any view's prediction, in the same millimetres as eq. 9 (N-MPJPE's idea).
    bone_length_loss
        each view's bone lengths after Π against the target's bone lengths (the bone term
        of semi-supervised VideoPose3D): a shrunken pose has short bones and pays for them.

`CONSISTENCY_MODES` names the variants of the λ2 term that `loss.mv_mode` chooses from.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from pose3d.geometry import HeatmapSpace
from pose3d.losses.consistency import multiview_consistency_loss, pairwise_l1, views_to_world
from pose3d.skeleton.h36m import BONES, ROOT

_PARENT = [p for p, _ in BONES]
_CHILD = [c for _, c in BONES]
_MIN_SIZE_MM = 1.0  # a view's pose smaller than this is not rescaled up by more than 1/1 mm


def scale_normalised_consistency_loss(pred_coords: Tensor, root_depth: Tensor, K: Tensor,
                                      R: Tensor, t: Tensor, valid: Tensor, space: HeatmapSpace,
                                      target_world: Tensor) -> Tensor:
    """Eq. 9 on root-relative poses scaled to the target's size, mean over tuples, world mm.

    Shapes as multiview_consistency_loss; target_world [B, J, 3] world mm. Every view's
    pose Π_c(Ĵ_c) minus its root is multiplied by ||target - target_root|| / ||Π_c(Ĵ_c) -
    root|| (norms over all J x 3 values), so multiplying any view's prediction about its
    root by a factor leaves the loss unchanged.
    """
    world, valid = views_to_world(pred_coords, root_depth, K, R, t, valid, space)
    rel = world - world[..., ROOT:ROOT + 1, :]
    target = target_world.to(world.dtype)
    size = (target - target[:, ROOT:ROOT + 1]).flatten(1).norm(dim=-1)  # [B]
    norm = rel.flatten(2).norm(dim=-1).clamp_min(_MIN_SIZE_MM)  # [B, V]
    return pairwise_l1(rel * (size[:, None] / norm)[..., None, None], valid)


def bone_length_loss(pred_coords: Tensor, root_depth: Tensor, K: Tensor, R: Tensor, t: Tensor,
                     valid: Tensor, space: HeatmapSpace, target_world: Tensor) -> Tensor:
    """Mean |bone length of Π_c(Ĵ_c) - bone length of the target| over the 16 bones and the
    valid views, world mm. Shapes as scale_normalised_consistency_loss; 0 with a gradient
    path when no view is valid."""
    world, valid = views_to_world(pred_coords, root_depth, K, R, t, valid, space)
    pred_len = _bone_lengths(world)  # [B, V, 16]
    target_len = _bone_lengths(target_world.to(world.dtype))[:, None]  # [B, 1, 16]
    err = (pred_len - target_len).abs().mean(dim=-1)  # [B, V]
    err = torch.where(valid, err, torch.zeros_like(err))
    return err.sum() / valid.sum().clamp_min(1)


def _bone_lengths(pose: Tensor) -> Tensor:
    """[..., J, 3] mm -> [..., 16] mm; finite gradient for a zero-length bone."""
    d = pose[..., _CHILD, :] - pose[..., _PARENT, :]
    return (d.pow(2).sum(dim=-1) + 1e-6).sqrt()


def _pairwise(pred_coords: Tensor, root_depth: Tensor, K: Tensor, R: Tensor, t: Tensor,
              valid: Tensor, space: HeatmapSpace, target_world: Tensor) -> Tensor:
    return multiview_consistency_loss(pred_coords, root_depth, K, R, t, valid, space)


# loss.mv_mode -> the λ2 term, each called with (pred_coords, root_depth, K, R, t, valid,
# space, target_world)
CONSISTENCY_MODES: dict[str, Callable[..., Tensor]] = {
    "pairwise": _pairwise,  # eq. 9, the paper's "Ours"
    "scale_normalised": scale_normalised_consistency_loss,
}


def consistency_term(mode: str) -> Callable[..., Tensor]:
    """The λ2 term named `mode` (a key of CONSISTENCY_MODES)."""
    if mode not in CONSISTENCY_MODES:
        raise ValueError(f"unknown consistency mode {mode!r}; modes: "
                         f"{', '.join(CONSISTENCY_MODES)}")
    return CONSISTENCY_MODES[mode]
