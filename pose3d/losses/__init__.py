"""Losses: L_pose, the multi-view consistency L_mv (eq. 9), their sum (eq. 10) and the
multi-view pretraining loss; consistency terms that cannot win by shrinking (remedies)."""

from pose3d.losses.consistency import multiview_consistency_loss
from pose3d.losses.mv_pretrain import heatmap_cross_entropy, mv_pretrain_loss
from pose3d.losses.pose import pose_loss
from pose3d.losses.remedies import (
    CONSISTENCY_MODES,
    bone_length_loss,
    consistency_term,
    scale_normalised_consistency_loss,
)
from pose3d.losses.targets import heatmap_targets, pose_targets, prediction_to_world
from pose3d.losses.total import total_loss

__all__ = ["CONSISTENCY_MODES", "bone_length_loss", "consistency_term", "heatmap_cross_entropy",
           "heatmap_targets", "multiview_consistency_loss", "mv_pretrain_loss", "pose_loss",
           "pose_targets", "prediction_to_world", "scale_normalised_consistency_loss",
           "total_loss"]
