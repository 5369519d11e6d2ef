"""Cameras, projection, crops, the Human3.6M rig and heatmap-space normalisation."""

from pose3d.geometry.camera import (
    Camera,
    rotation_from_quaternion,
    square_about_centre,
    square_box,
)
from pose3d.geometry.h36m_rig import CAMERA_NAMES, h36m_cameras
from pose3d.geometry.heatmap import (
    HeatmapSpace,
    heatmap_to_camera,
    heatmap_to_world,
    world_to_heatmap,
)
from pose3d.geometry.projection import (
    camera_to_pixels,
    camera_to_world,
    pixels_to_camera,
    project,
    projection_matrix,
    unproject,
    validate_cameras,
    world_to_camera,
)

__all__ = [
    "CAMERA_NAMES", "Camera", "HeatmapSpace", "camera_to_pixels", "camera_to_world",
    "h36m_cameras", "heatmap_to_camera", "heatmap_to_world", "pixels_to_camera", "project",
    "projection_matrix", "rotation_from_quaternion", "square_about_centre", "square_box",
    "unproject",
    "validate_cameras", "world_to_camera", "world_to_heatmap",
]
