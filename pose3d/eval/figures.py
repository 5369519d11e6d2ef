"""Figures like the paper's Figs. 4-5: a view with the projected predicted skeleton, and a
3D plot of the prediction (coloured by side) against the ground truth (grey)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pose3d.skeleton.h36m import BONES, ROOT, bone_side  # noqa: E402

SIDE_COLOURS = {"left": "#e4572e", "right": "#2e86ab", "centre": "#76b041"}
GT_COLOUR = "#9a9a9a"


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


def sample_figure(image: np.ndarray, pred2d: np.ndarray, pred3d: np.ndarray,
                  gt3d: np.ndarray, title: str = "") -> plt.Figure:
    """One row: the input view (HxWx3 uint8) with the projected prediction, then the 3D
    prediction against GT, both root-aligned (mm)."""
    fig = plt.figure(figsize=(7.5, 3.6))
    ax_img = fig.add_subplot(1, 2, 1)
    ax_img.imshow(image)
    draw_skeleton_2d(ax_img, pred2d)
    ax_img.set_axis_off()
    ax3d = fig.add_subplot(1, 2, 2, projection="3d")
    gt = gt3d - gt3d[ROOT]
    pred = pred3d - pred3d[ROOT]
    draw_skeleton_3d(ax3d, gt, colour=GT_COLOUR, linewidth=3.0)
    draw_skeleton_3d(ax3d, pred)
    lim = max(float(np.abs(gt).max()), 900.0)
    ax3d.set_xlim(-lim, lim)
    ax3d.set_ylim(-lim, lim)
    ax3d.set_zlim(-lim, lim)
    ax3d.set_box_aspect((1, 1, 1))
    ax3d.set_xticklabels([])
    ax3d.set_yticklabels([])
    ax3d.set_zticklabels([])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 100) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
