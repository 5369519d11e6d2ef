"""Rotation matrices and forward kinematics shared by the procedural generator and BVH.

Convention (the BVH one): joint j sits at `offsets[j]` in its parent's frame, and its own
rotation turns the bones that hang from it: `G[j] = G[parent] @ L[j]`,
`P[j] = P[parent] + G[parent] @ offsets[j]`. Rotations act on column vectors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_AXES = {"x": 0, "y": 1, "z": 2}


def axis_rotation(axis: str, angle: np.ndarray | float) -> np.ndarray:
    """Right-handed rotation by `angle` radians about axis 'x', 'y' or 'z': [..., 3, 3]."""
    if axis not in _AXES:
        raise ValueError(f"axis must be 'x', 'y' or 'z', got {axis!r}")
    angle = np.asarray(angle, dtype=np.float64)
    c, s = np.cos(angle), np.sin(angle)
    i = _AXES[axis]
    j, k = (i + 1) % 3, (i + 2) % 3
    out = np.zeros(angle.shape + (3, 3))
    out[..., i, i] = 1.0
    out[..., j, j] = c
    out[..., k, k] = c
    out[..., k, j] = s
    out[..., j, k] = -s
    return out


def euler_to_matrix(angles: np.ndarray, order: str) -> np.ndarray:
    """Intrinsic rotations applied in `order` (e.g. 'zyx': Rz @ Ry @ Rx), radians.

    angles: [..., len(order)] in the same order as the letters. Returns [..., 3, 3].
    """
    angles = np.asarray(angles, dtype=np.float64)
    if angles.shape[-1] != len(order):
        raise ValueError(f"got {angles.shape[-1]} angles for rotation order {order!r}")
    out = np.broadcast_to(np.eye(3), angles.shape[:-1] + (3, 3)).copy()
    for n, axis in enumerate(order.lower()):
        out = out @ axis_rotation(axis, angles[..., n])
    return out


def check_parents(parents: Sequence[int]) -> None:
    """Parents must come before their children (one root, index 0), as FK runs in order."""
    if len(parents) == 0 or parents[0] != -1:
        raise ValueError("joint 0 must be the root (parent -1)")
    for j, p in enumerate(parents[1:], start=1):
        if not 0 <= p < j:
            raise ValueError(f"joint {j} has parent {p}: parents must precede children")


def forward_kinematics(parents: Sequence[int], offsets: np.ndarray, local_rot: np.ndarray,
                       root_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World positions and rotations of every joint.

    parents: [J]; offsets: [J, 3] or [T, J, 3] (offsets[0] is ignored: the root is placed at
    root_pos); local_rot: [T, J, 3, 3]; root_pos: [T, 3]. Returns positions [T, J, 3] (same
    units as offsets) and global rotations [T, J, 3, 3].
    """
    check_parents(parents)
    local_rot = np.asarray(local_rot, dtype=np.float64)
    num_frames, num_joints = local_rot.shape[:2]
    if len(parents) != num_joints:
        raise ValueError(f"{len(parents)} parents for {num_joints} joint rotations")
    offsets = np.broadcast_to(np.asarray(offsets, dtype=np.float64), (num_frames, num_joints, 3))
    pos = np.empty((num_frames, num_joints, 3))
    rot = np.empty((num_frames, num_joints, 3, 3))
    pos[:, 0] = root_pos
    rot[:, 0] = local_rot[:, 0]
    for j in range(1, num_joints):
        p = parents[j]
        pos[:, j] = pos[:, p] + np.einsum("tab,tb->ta", rot[:, p], offsets[:, j])
        rot[:, j] = rot[:, p] @ local_rot[:, j]
    return pos, rot
