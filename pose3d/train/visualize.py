"""Pictures of predictions: 2D skeletons drawn over the views of a tuple (GT green, prediction
coloured by body side), for W&B and for the evaluation report."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from pose3d.data.schema import to_uint8
from pose3d.skeleton.h36m import BONES, bone_side

_SIDE_COLOURS = {"left": (255, 80, 80), "right": (80, 140, 255), "centre": (255, 220, 0)}
_GT_COLOUR = (40, 220, 40)


def draw_skeleton(image: np.ndarray, points: np.ndarray, colour: tuple[int, int, int] | None,
                  thickness: int = 2) -> np.ndarray:
    """Draw 17 joints [J, 2] (pixels) on `image` in place; colour None = by body side."""
    pts = np.round(np.asarray(points, dtype=np.float64)).astype(np.int64)
    if not np.isfinite(points).all():
        return image
    for bone in BONES:
        c = colour or _SIDE_COLOURS[bone_side(bone)]
        cv2.line(image, tuple(map(int, pts[bone[0]])), tuple(map(int, pts[bone[1]])), c,
                 thickness, cv2.LINE_AA)
    for p in pts:
        cv2.circle(image, (int(p[0]), int(p[1])), thickness + 1, colour or (255, 255, 255), -1)
    return image


def overlay_views(images: torch.Tensor, pred2d: torch.Tensor, gt2d: torch.Tensor | None = None,
                  size: int = 256, max_views: int = 4) -> np.ndarray:
    """One tuple's views side by side with skeletons drawn on them.

    images [V, 3, H, W] normalised; pred2d, gt2d [V, J, 2] pixels of those images.
    Returns uint8 RGB [size, min(V, max_views) * size, 3].
    """
    if images.dim() != 4 or pred2d.dim() != 3 or pred2d.shape[0] != images.shape[0]:
        raise ValueError(f"need images [V,3,H,W] and pred2d [V,J,2], got "
                         f"{list(images.shape)} and {list(pred2d.shape)}")
    tiles = []
    for v in range(min(images.shape[0], max_views)):
        tile = to_uint8(images[v])
        scale = size / tile.shape[1]
        tile = cv2.resize(tile, (size, round(tile.shape[0] * scale)),
                          interpolation=cv2.INTER_LINEAR)
        thickness = max(1, size // 128)
        if gt2d is not None:
            draw_skeleton(tile, gt2d[v].detach().float().cpu().numpy() * scale, _GT_COLOUR,
                          thickness)
        draw_skeleton(tile, pred2d[v].detach().float().cpu().numpy() * scale, None, thickness)
        tiles.append(tile)
    return np.concatenate(tiles, axis=1)
