"""The single-view training objective: L_pose plus L_mv (eq. 10)."""

from __future__ import annotations

from torch import Tensor

from pose3d.geometry import HeatmapSpace
from pose3d.losses.pose import pose_loss
from pose3d.losses.remedies import bone_length_loss, consistency_term
from pose3d.losses.targets import heatmap_targets


def total_loss(pred_coords: Tensor, target_world: Tensor, has_target: Tensor, K: Tensor,
               R: Tensor, t: Tensor, valid: Tensor, space: HeatmapSpace,
               lambda_pose: float = 1.0, lambda_mv: float = 0.0, mv_mode: str = "pairwise",
               lambda_bone: float = 0.0) -> tuple[Tensor, dict]:
    """Eq. 10: L = λ1 L_pose + λ2 L_mv for single-view predictions on multi-view tuples,
    plus λ_bone L_bone (pose3d.losses.remedies) when asked.

    pred_coords [B, V, J, 3] voxels (F_sv on every view of each tuple); target_world
    [B, J, 3] world mm (GT or P-GT, see pose_targets), has_target [B] bool; cameras
    K [B, V, 3, 3], R, t [B, V, 3]; valid [B, V] bool. L_pose (mean voxel error per
    coordinate), L_mv (mm) and L_bone (mm) use only valid views of tuples with a target.
    mv_mode picks L_mv: "pairwise" is eq. 9 (the paper's "Ours"), "scale_normalised" eq. 9
    on poses scaled to the target's size. λ2 = 0 is the "L1-only" baseline; L_mv and L_bone
    are still computed for logging.

    Returns (loss, parts) with parts {"pose", "mv", "bone", "loss"} as detached scalars.
    """
    coords, root_depth = heatmap_targets(target_world, K, R, t, space, valid)
    use = valid.bool() & has_target.bool()[:, None] & (root_depth > 0)
    views = (pred_coords, root_depth, K, R, t, use, space, target_world)
    l_pose = pose_loss(pred_coords, coords, use)
    l_mv = consistency_term(mv_mode)(*views)
    l_bone = bone_length_loss(*views)
    loss = lambda_pose * l_pose + lambda_mv * l_mv + lambda_bone * l_bone
    return loss, {"pose": l_pose.detach(), "mv": l_mv.detach(), "bone": l_bone.detach(),
                  "loss": loss.detach()}
