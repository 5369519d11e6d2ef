"""Models: the single-view integral model F_sv and the multi-view triangulation model F_mv."""

from __future__ import annotations

from pose3d.models.backbone import RESNETS, ResNetTrunk, build_backbone, load_trunk_weights
from pose3d.models.build import MODELS, build_model
from pose3d.models.multi_view import MultiViewTriangulationModel
from pose3d.models.saved import CheckpointError, SavedModel, load_model
from pose3d.models.single_view import SingleViewModel

__all__ = ["MODELS", "RESNETS", "CheckpointError", "MultiViewTriangulationModel", "ResNetTrunk",
           "SavedModel", "SingleViewModel", "build_backbone", "build_model", "load_model",
           "load_trunk_weights"]
