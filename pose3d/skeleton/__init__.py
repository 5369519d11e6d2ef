"""Joint sets: the 17-joint Human3.6M order and maps from other orders into it."""

from pose3d.skeleton.h36m import (
    BONES,
    FLIP_PERMUTATION,
    JOINT_NAMES,
    LEFT_RIGHT_PAIRS,
    NUM_JOINTS,
    PARENTS,
    ROOT,
)

__all__ = ["BONES", "FLIP_PERMUTATION", "JOINT_NAMES", "LEFT_RIGHT_PAIRS", "NUM_JOINTS",
           "PARENTS", "ROOT"]
