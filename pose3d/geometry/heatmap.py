"""Heatmap-space normalisation of a world pose into one view (docs/design.md, eqs. 4-8) and its
exact inverse Π.

Heatmap coordinates (u', v', z') are voxel units of a D x H x W volume: u' = u / s and
v' = v / s with s = image size / heatmap size (pixels per voxel), and
z' = (z_cam - z_cam,root + S/2) / S * D, the body assumed to fit in S mm around the root.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from pose3d.geometry.projection import (
    camera_to_pixels,
    camera_to_world,
    pixels_to_camera,
    world_to_camera,
)
from pose3d.skeleton.h36m import ROOT


@dataclass(frozen=True)
class HeatmapSpace:
    """The geometry of a heatmap volume: pixels per voxel, depth bins, depth range (mm)."""

    stride: float = 4.0
    depth_bins: int = 64
    depth_range_mm: float = 2000.0

    def __post_init__(self) -> None:
        if self.stride <= 0 or self.depth_bins <= 0 or self.depth_range_mm <= 0:
            raise ValueError(f"HeatmapSpace needs positive stride, bins and range: {self}")

    @classmethod
    def for_sizes(cls, image_size: int, heatmap_size: int, depth_bins: int | None = None,
                  depth_range_mm: float = 2000.0) -> HeatmapSpace:
        """The space of a network with `image_size` input and `heatmap_size` output."""
        return cls(image_size / heatmap_size, depth_bins or heatmap_size, depth_range_mm)


def world_to_heatmap(points: Tensor, K: Tensor, R: Tensor, t: Tensor, space: HeatmapSpace,
                     root: int = ROOT) -> tuple[Tensor, Tensor]:
    """World mm [..., J, 3] -> heatmap voxels [..., J, 3] in one view, and the root depth.

    Returns (coords [..., J, 3] as (u', v', z'), root_depth [...] camera mm), the root depth
    being what Π needs to go back. K, R, t are the view's camera [..., 3, 3], [..., 3].
    """
    cam = world_to_camera(points, R, t)
    uv = camera_to_pixels(cam, K) / space.stride
    root_depth = cam[..., root, 2]
    z = (cam[..., 2] - root_depth.unsqueeze(-1) + space.depth_range_mm / 2)
    z = z / space.depth_range_mm * space.depth_bins
    return torch.cat([uv, z.unsqueeze(-1)], dim=-1), root_depth


def heatmap_to_world(coords: Tensor, root_depth: Tensor, K: Tensor, R: Tensor, t: Tensor,
                     space: HeatmapSpace) -> Tensor:
    """Π: heatmap voxels [..., J, 3] + root depth [...] (camera mm) -> world mm [..., J, 3]."""
    return camera_to_world(heatmap_to_camera(coords, root_depth, K, space), R, t)


def heatmap_to_camera(coords: Tensor, root_depth: Tensor, K: Tensor,
                      space: HeatmapSpace) -> Tensor:
    """Heatmap voxels [..., J, 3] + root depth [...] -> camera mm [..., J, 3]."""
    if coords.shape[-1] != 3:
        raise ValueError(f"coords must have shape [..., J, 3], got {list(coords.shape)}")
    if root_depth.shape != coords.shape[:-2]:
        raise ValueError(f"root_depth must have shape {list(coords.shape[:-2])}, "
                         f"got {list(root_depth.shape)}")
    z = coords[..., 2] / space.depth_bins * space.depth_range_mm
    z = z - space.depth_range_mm / 2 + root_depth.unsqueeze(-1)
    return pixels_to_camera(coords[..., :2] * space.stride, z, K)
