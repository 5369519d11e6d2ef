"""Index maps from other datasets' joint orders into the 17-joint Human3.6M order.

Each map is a tuple of length 17: entry j is the index, in the source order, of our joint j
(`ours = theirs[..., MAP, :]`).
"""

from __future__ import annotations

from pose3d.skeleton.h36m import JOINT_NAMES, NUM_JOINTS

# learnable-triangulation-pytorch's Human3.6M order (root = pelvis at index 6).
LEARNABLE_TRIANGULATION_NAMES: tuple[str, ...] = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
    "pelvis", "spine", "thorax", "head", "right_wrist", "right_elbow", "right_shoulder",
    "left_shoulder", "left_elbow", "left_wrist", "neck",
)

# MPI-INF-3DHP's 28 annotated joints (annot3 / univ_annot3 order).
MPI_INF_3DHP_NAMES: tuple[str, ...] = (
    "spine3", "spine4", "spine2", "spine", "pelvis", "neck", "head", "head_top",
    "left_clavicle", "left_shoulder", "left_elbow", "left_wrist", "left_hand",
    "right_clavicle", "right_shoulder", "right_elbow", "right_wrist", "right_hand",
    "left_hip", "left_knee", "left_ankle", "left_foot", "left_toe",
    "right_hip", "right_knee", "right_ankle", "right_foot", "right_toe",
)

# Which 3DHP joint stands in for ours where the names differ, as in 3DHP's own 17-joint
# test set: its 'spine' is the H36M-like mid-spine, its 'neck' sits where H36M's thorax
# does, its 'head' where H36M's neck/nose does, and its 'head_top' is H36M's head.
_MPI_INF_3DHP_FOR_OURS = {"thorax": "neck", "neck": "head", "head": "head_top"}


def index_map(source_names: tuple[str, ...],
              aliases: dict[str, str] | None = None) -> tuple[int, ...]:
    """The map from `source_names` into our order; `aliases` renames ours -> theirs."""
    aliases = aliases or {}
    missing = [n for n in JOINT_NAMES if aliases.get(n, n) not in source_names]
    if missing:
        raise ValueError(f"source joint order lacks {missing}")
    return tuple(source_names.index(aliases.get(n, n)) for n in JOINT_NAMES)


# Human3.6M's official release stores 32 joints per frame (D3_Positions `Pose`, [frames, 96]);
# ours are its pelvis 0, right hip/knee/ankle 1-3, left hip/knee/ankle 6-8, spine 12,
# thorax 13, neck 14, head 15, left shoulder/elbow/wrist 17-19, right 25-27. The others are
# duplicates (the release repeats joints at bone ends) and hand / toe sites.
H36M_RELEASE_NUM_JOINTS = 32
H36M_RELEASE_TO_H36M: tuple[int, ...] = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25,
                                         26, 27)

LEARNABLE_TRIANGULATION_TO_H36M = index_map(LEARNABLE_TRIANGULATION_NAMES)
MPI_INF_3DHP_TO_H36M = index_map(MPI_INF_3DHP_NAMES, _MPI_INF_3DHP_FOR_OURS)
H36M_TO_LEARNABLE_TRIANGULATION = tuple(
    LEARNABLE_TRIANGULATION_TO_H36M.index(i) for i in range(NUM_JOINTS)
)
