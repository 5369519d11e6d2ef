"""The 17-joint Human3.6M skeleton used throughout pose3d."""

from __future__ import annotations

JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
    "left_ankle", "spine", "thorax", "neck", "head", "left_shoulder", "left_elbow",
    "left_wrist", "right_shoulder", "right_elbow", "right_wrist",
)
NUM_JOINTS = len(JOINT_NAMES)
ROOT = 0  # pelvis: heatmap depth and root-aligned metrics are relative to it
JOINT_INDEX = {name: i for i, name in enumerate(JOINT_NAMES)}

# PARENTS[j] is the joint j hangs from (-1 for the root); BONES lists (parent, child).
PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
BONES: tuple[tuple[int, int], ...] = tuple((p, c) for c, p in enumerate(PARENTS) if p >= 0)

# (left, right) pairs; FLIP_PERMUTATION maps each joint to its mirror image.
LEFT_RIGHT_PAIRS: tuple[tuple[int, int], ...] = (
    (4, 1), (5, 2), (6, 3), (11, 14), (12, 15), (13, 16),
)


def _flip_permutation() -> tuple[int, ...]:
    perm = list(range(NUM_JOINTS))
    for left, right in LEFT_RIGHT_PAIRS:
        perm[left], perm[right] = right, left
    return tuple(perm)


FLIP_PERMUTATION = _flip_permutation()


def side(joint: int) -> str:
    """'left', 'right' or 'centre': used to colour limbs so the sides can be told apart."""
    name = JOINT_NAMES[joint]
    return "left" if name.startswith("left") else "right" if name.startswith("right") else "centre"


def bone_side(bone: tuple[int, int]) -> str:
    """The side of a bone is the side of its child joint."""
    return side(bone[1])
