"""The training objectives: fine-tuning (eq. 10) and the multi-view pretraining loss."""

from __future__ import annotations

import torch
from torch import Tensor

from pose3d.geometry import HeatmapSpace, project, world_to_camera
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


def mv_pretrain_loss(out: dict[str, Tensor], joints3d: Tensor, has_joints3d: Tensor,
                     K: Tensor, R: Tensor, t: Tensor, valid: Tensor, lambda_3d: float = 1.0,
                     lambda_2d: float = 0.0, stride: float = 1.0) -> tuple[Tensor, dict]:
    """Loss for pretraining F_mv on labeled tuples.

    `out` is MultiViewTriangulationModel's output. The 3D term is the mean absolute error per
    coordinate (mm) between the triangulated joints and GT joints3d [B, J, 3], over joints
    with valid3d and tuples with has_joints3d [B]; as in learnable triangulation it trains
    the 2D stage and the confidences through the DLT. L1 keeps the gradient bounded while
    early triangulations are far off. The optional 2D term (λ_2d) is the mean absolute error
    per coordinate between joints2d and the GT projected into each valid view, in units of
    `stride` pixels (pass model.stride for heatmap pixels); it gives the 2D heatmaps a direct
    signal, which helps a backbone that starts without 2D pretraining.

    Returns (loss, parts) with parts {"3d", "2d", "loss"} as detached scalars.
    """
    has_gt = has_joints3d.bool()
    pred3d = out["joints3d"]
    if pred3d.shape != joints3d.shape:
        raise ValueError(f"joints3d must have shape {list(pred3d.shape)} like the model's "
                         f"joints3d, got {list(joints3d.shape)}")
    use3d = out["valid3d"] & has_gt[:, None] & torch.isfinite(pred3d).all(dim=-1)
    l3d = _masked_l1(pred3d, joints3d.float(), use3d)
    with torch.autocast(joints3d.device.type, enabled=False):
        gt = joints3d.float()[:, None]
        in_front = world_to_camera(gt, R.float(), t.float())[..., 2] > 1.0  # [B, V, J]
        target2d = project(gt, K.float(), R.float(), t.float())
    use2d = in_front & valid.bool()[..., None] & has_gt[:, None, None]
    l2d = _masked_l1(out["joints2d"] / stride, target2d / stride, use2d)
    loss = lambda_3d * l3d + lambda_2d * l2d
    return loss, {"3d": l3d.detach(), "2d": l2d.detach(), "loss": loss.detach()}


def _masked_l1(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean |pred - target| per coordinate over the points where mask [...] holds, NaN-free;
    0 with a gradient path when nothing is selected."""
    # Mask the inputs, not the error: where() passes exact zeros back to the masked points,
    # whereas NaN there would turn the zero gradient of abs() into NaN.
    keep = mask[..., None]
    pred = torch.where(keep, pred, torch.zeros_like(pred))
    target = torch.where(keep, target, torch.zeros_like(target))
    return (pred - target).abs().mean(dim=-1).sum() / mask.sum().clamp_min(1)
