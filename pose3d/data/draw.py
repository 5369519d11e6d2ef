"""Drawing skeletons: bones of the 17-joint skeleton on matplotlib axes (2D and 3D),
coloured by body side, and saving a figure. Used by data previews, evaluation figures and
motion contact sheets."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pose3d.skeleton.h36m import BONES, bone_side  # noqa: E402

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


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 100) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
