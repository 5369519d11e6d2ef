"""A contact sheet of motion clips as 3D stick figures, to check by eye that they look
human: one row per procedural action (or per BVH file), a few frames across.

    python -m pose3d.data.motion.preview --out motion.png [--bvh a.bvh b.bvh] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pose3d.data.draw import draw_skeleton_3d, plt, save_figure
from pose3d.data.motion.body import sample_subject
from pose3d.data.motion.bvh import clips_from_bvh_files
from pose3d.data.motion.procedural import ACTIONS, generate_clip
from pose3d.skeleton.h36m import ROOT


def contact_sheet(clips: list[tuple[str, np.ndarray]], columns: int = 6,
                  half_width: float = 1000.0) -> plt.Figure:
    """clips: (name, poses [T, 17, 3] world mm); frames evenly spaced over each clip, each
    panel centred on the pelvis with the floor at the bottom and a trail of the root."""
    fig = plt.figure(figsize=(2.1 * columns, 2.3 * len(clips)))
    for row, (name, poses) in enumerate(clips):
        frames = np.linspace(0, len(poses) - 1, columns).round().astype(int)
        for col, f in enumerate(frames):
            ax = fig.add_subplot(len(clips), columns, row * columns + col + 1, projection="3d")
            centre = poses[f, ROOT, :2]
            trail = poses[: f + 1, ROOT]
            ax.plot(trail[:, 0], trail[:, 1], 0 * trail[:, 2], color="#bbbbbb", linewidth=1)
            draw_skeleton_3d(ax, poses[f])
            ax.set_xlim(centre[0] - half_width, centre[0] + half_width)
            ax.set_ylim(centre[1] - half_width, centre[1] + half_width)
            ax.set_zlim(0, 2 * half_width)
            ax.set_box_aspect((1, 1, 1))
            ax.view_init(elev=12, azim=-60)
            ax.set_xticklabels([])
            ax.set_yticklabels([])
            ax.set_zticklabels([])
            ax.set_title(f"{name} t={f}" if col == 0 else f"t={f}", fontsize=7)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="PNG path")
    parser.add_argument("--bvh", nargs="*", default=None, help="BVH files instead of actions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, default=150, help="clip length (procedural)")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--columns", type=int, default=6)
    args = parser.parse_args(argv)
    if args.bvh:
        clips = clips_from_bvh_files(args.bvh, args.fps)
    else:
        rng = np.random.default_rng(args.seed)
        clips = [(a, generate_clip(a, sample_subject(args.seed + i), args.frames, args.fps, rng))
                 for i, a in enumerate(ACTIONS)]
    path = save_figure(contact_sheet(clips, args.columns), Path(args.out), dpi=80)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
