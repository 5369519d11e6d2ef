"""Drawing the 17-joint skeleton, bones coloured by body side: on uint8 RGB images with
OpenCV (`draw_skeleton`, `overlay_views`: data previews, training pictures, predictions) and
on matplotlib axes in 2D and 3D (evaluation figures, motion contact sheets)."""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from pose3d.data.schema import to_uint8  # noqa: E402
from pose3d.skeleton.h36m import BONES, bone_side  # noqa: E402

# matplotlib colours
SIDE_COLOURS = {"left": "#e4572e", "right": "#2e86ab", "centre": "#76b041"}
GT_COLOUR = "#9a9a9a"
# RGB colours on images: predictions, ground truth, and a brighter set that stands out
# against the rendered bodies' limb colours (data previews)
SIDE_RGB = {"left": (255, 80, 80), "right": (80, 140, 255), "centre": (255, 220, 0)}
GT_RGB = (40, 220, 40)
BRIGHT_SIDE_RGB = {"left": (120, 255, 80), "right": (255, 60, 255), "centre": (255, 255, 255)}
_SHIFT = 4  # OpenCV fixed-point bits: sub-pixel positions


def draw_skeleton(image: np.ndarray, points: np.ndarray, colour: tuple[int, int, int] | None
                  = None, thickness: int = 2, palette: dict | None = None,
                  joint_colour: tuple[int, int, int] | None = None) -> np.ndarray:
    """Draw joints [17, 2] (pixels of `image`) on a uint8 RGB image in place: bones in
    `colour`, or by body side from `palette` (default SIDE_RGB); joints as dots in
    `joint_colour` (default: `colour`, else white). A pose with a non-finite point is not
    drawn."""
    points = np.asarray(points, dtype=np.float64)
    if not np.isfinite(points).all():
        return image
    pts = np.round(points * (1 << _SHIFT)).astype(np.int64)
    palette = palette or SIDE_RGB
    for bone in BONES:
        cv2.line(image, tuple(map(int, pts[bone[0]])), tuple(map(int, pts[bone[1]])),
                 colour or palette[bone_side(bone)], thickness, cv2.LINE_AA, shift=_SHIFT)
    dot = joint_colour or colour or (255, 255, 255)
    for p in pts:
        cv2.circle(image, (int(p[0]), int(p[1])), (thickness + 1) << _SHIFT, dot, -1,
                   cv2.LINE_AA, shift=_SHIFT)
    return image


def overlay_views(images: torch.Tensor, pred2d: torch.Tensor, gt2d: torch.Tensor | None = None,
                  size: int = 256, max_views: int = 4) -> np.ndarray:
    """One tuple's views side by side with skeletons drawn on them (GT green, prediction
    by side).

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
            draw_skeleton(tile, gt2d[v].detach().float().cpu().numpy() * scale, GT_RGB,
                          thickness)
        draw_skeleton(tile, pred2d[v].detach().float().cpu().numpy() * scale, None, thickness)
        tiles.append(tile)
    return np.concatenate(tiles, axis=1)


def draw_skeleton_2d(ax, joints2d: np.ndarray, colour: str | None = None,
                     linewidth: float = 2.0) -> None:
    """Bones of [17, 2] pixel joints on a matplotlib axis, coloured by side unless `colour`."""
    for bone in BONES:
        a, b = joints2d[list(bone)]
        ax.plot([a[0], b[0]], [a[1], b[1]], color=colour or SIDE_COLOURS[bone_side(bone)],
                linewidth=linewidth, solid_capstyle="round")


def draw_skeleton_3d(ax, joints3d: np.ndarray, colour: str | None = None,
                     linewidth: float = 2.0) -> None:
    """Bones of [17, 3] world-mm joints on a 3D axis (z up), coloured by side unless `colour`."""
    for bone in BONES:
        a, b = joints3d[list(bone)]
        ax.plot([a[0], b[0]], [a[1], b[1]], [a[2], b[2]],
                color=colour or SIDE_COLOURS[bone_side(bone)], linewidth=linewidth)


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 100) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
