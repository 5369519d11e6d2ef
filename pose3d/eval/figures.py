"""Figures like the paper's Figs. 4-5: a view with the projected predicted skeleton, and a
3D plot of the prediction (coloured by side) against the ground truth (grey)."""

from __future__ import annotations

import numpy as np

from pose3d.data.draw import GT_COLOUR, draw_skeleton_2d, draw_skeleton_3d, plt
from pose3d.skeleton.h36m import ROOT


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
