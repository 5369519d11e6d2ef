import numpy as np

from pose3d.skeleton import BONES, FLIP_PERMUTATION, JOINT_NAMES, NUM_JOINTS, PARENTS, ROOT
from pose3d.skeleton.h36m import bone_side
from pose3d.skeleton.mappings import (
    H36M_TO_LEARNABLE_TRIANGULATION,
    LEARNABLE_TRIANGULATION_NAMES,
    LEARNABLE_TRIANGULATION_TO_H36M,
    MPI_INF_3DHP_NAMES,
    MPI_INF_3DHP_TO_H36M,
)


def test_tree_is_rooted_at_the_pelvis():
    assert NUM_JOINTS == 17 and JOINT_NAMES[ROOT] == "pelvis" and PARENTS[ROOT] == -1
    assert len(BONES) == 16
    for j in range(NUM_JOINTS):  # every joint reaches the root
        seen = 0
        while j != ROOT:
            j = PARENTS[j]
            seen += 1
            assert seen < NUM_JOINTS


def test_flip_swaps_left_and_right_names():
    for j, k in enumerate(FLIP_PERMUTATION):
        a, b = JOINT_NAMES[j], JOINT_NAMES[k]
        assert a.replace("left", "X").replace("right", "left").replace("X", "right") == b
    assert sorted(bone_side(b) for b in BONES).count("left") == 6


def test_learnable_triangulation_order_round_trips():
    names = np.array(LEARNABLE_TRIANGULATION_NAMES)
    assert list(names[list(LEARNABLE_TRIANGULATION_TO_H36M)]) == list(JOINT_NAMES)
    ours = np.arange(17)
    theirs = ours[list(H36M_TO_LEARNABLE_TRIANGULATION)]
    assert list(theirs[list(LEARNABLE_TRIANGULATION_TO_H36M)]) == list(ours)
    assert LEARNABLE_TRIANGULATION_NAMES[6] == "pelvis"  # their root index


def test_mpi_inf_3dhp_map_picks_matching_joints():
    mapped = [MPI_INF_3DHP_NAMES[i] for i in MPI_INF_3DHP_TO_H36M]
    for ours, theirs in zip(JOINT_NAMES, mapped):
        if ours not in ("thorax", "neck", "head"):
            assert ours == theirs
    assert mapped[8:11] == ["neck", "head", "head_top"]
    assert len(MPI_INF_3DHP_NAMES) == 28
