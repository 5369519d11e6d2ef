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


# ---- joint orders pinned to the source datasets' documentation, not to our tables

# Human3.6M's 32 joints of the D3_Positions files, by index, as Martinez et al.'s
# 3d-pose-baseline names them (data_utils.H36M_NAMES; H36M's own metadata calls 13, 14, 15
# Neck, Head, Site); the unnamed ones (end-effector "Site"s, toes, thumbs, the collar
# joints) are left out.
H36M_32_NAMES = {0: "Hip", 1: "RHip", 2: "RKnee", 3: "RFoot", 6: "LHip", 7: "LKnee",
                 8: "LFoot", 12: "Spine", 13: "Thorax", 14: "Neck/Nose", 15: "Head",
                 17: "LShoulder", 18: "LElbow", 19: "LWrist", 25: "RShoulder", 26: "RElbow",
                 27: "RWrist"}
# What each of those is called here: H36M's "Foot" joint is the ankle, "Neck/Nose" sits
# below the head centre ("Head").
OURS_FOR_H36M = {"Hip": "pelvis", "RHip": "right_hip", "RKnee": "right_knee",
                 "RFoot": "right_ankle", "LHip": "left_hip", "LKnee": "left_knee",
                 "LFoot": "left_ankle", "Spine": "spine", "Thorax": "thorax",
                 "Neck/Nose": "neck", "Head": "head", "LShoulder": "left_shoulder",
                 "LElbow": "left_elbow", "LWrist": "left_wrist", "RShoulder": "right_shoulder",
                 "RElbow": "right_elbow", "RWrist": "right_wrist"}
# learnable-triangulation-pytorch's 17 joints are these of H36M's 32, in this order: its
# Human3.6M label script keeps `valid_joints = (3, 2, 1, 6, 7, 8, 0, 12, 13, 15, 27, 26, 25,
# 17, 18, 19) + (14,)`, "16 joints in MPII order + Neck/Nose" (root = index 6, the hip).
LEARNABLE_TRIANGULATION_FROM_H36M_32 = (3, 2, 1, 6, 7, 8, 0, 12, 13, 15, 27, 26, 25, 17, 18,
                                        19, 14)


def test_our_joints_are_human36m_joints_in_the_standard_17_joint_order():
    # the common 17-joint subset keeps H36M's 32-joint order: 0 1 2 3 6 7 8 12 13 14 15 17...
    expected = [OURS_FOR_H36M[H36M_32_NAMES[i]] for i in sorted(H36M_32_NAMES)]
    assert list(JOINT_NAMES) == expected


def test_learnable_triangulation_joints_land_on_the_same_named_joints():
    # A pose in their order whose joint k holds the H36M 32-joint index it came from: after
    # the map, each of our joints must hold the index of the H36M joint of its name.
    theirs = np.array(LEARNABLE_TRIANGULATION_FROM_H36M_32)
    ours = theirs[list(LEARNABLE_TRIANGULATION_TO_H36M)]
    got = {JOINT_NAMES[j]: H36M_32_NAMES[int(i)] for j, i in enumerate(ours)}
    assert got == {ours_name: h36m for h36m, ours_name in OURS_FOR_H36M.items()}
    assert got["head"] == "Head" and got["neck"] == "Neck/Nose" and got["pelvis"] == "Hip"
    back = ours[list(H36M_TO_LEARNABLE_TRIANGULATION)]
    assert back.tolist() == list(LEARNABLE_TRIANGULATION_FROM_H36M_32)


# MPI-INF-3DHP's 28 joints in the order of annot3 / univ_annot3 in its annot.mat files, as
# the dataset's own code lists them (mpii_get_joint_set.m, 'all' set).
MPI_INF_3DHP_ANNOT3 = (
    "spine3", "spine4", "spine2", "spine", "pelvis", "neck", "head", "head_top",
    "left_clavicle", "left_shoulder", "left_elbow", "left_wrist", "left_hand",
    "right_clavicle", "right_shoulder", "right_elbow", "right_wrist", "right_hand",
    "left_hip", "left_knee", "left_ankle", "left_foot", "left_toe",
    "right_hip", "right_knee", "right_ankle", "right_foot", "right_toe",
)
# Its 17-joint test-set skeleton (mpii_get_joint_set.m, 'relevant'), 1-based annot3 indices
# in the test set's order: head_top, neck, right shoulder / elbow / wrist, left shoulder /
# elbow / wrist, right hip / knee / ankle, left hip / knee / ankle, pelvis, spine, head.
MPI_INF_3DHP_TEST_17 = (8, 6, 15, 16, 17, 10, 11, 12, 24, 25, 26, 19, 20, 21, 5, 4, 7)
# Which of those each of ours is: 3DHP's head_top is H36M's head, its neck H36M's thorax,
# its head H36M's neck / nose (the test set is meant to match H36M's 17 joints).
OURS_FOR_TEST_17 = ("head", "thorax", "right_shoulder", "right_elbow", "right_wrist",
                    "left_shoulder", "left_elbow", "left_wrist", "right_hip", "right_knee",
                    "right_ankle", "left_hip", "left_knee", "left_ankle", "pelvis", "spine",
                    "neck")


def test_mpi_inf_3dhp_joints_come_from_the_documented_annot3_positions():
    assert tuple(MPI_INF_3DHP_NAMES) == MPI_INF_3DHP_ANNOT3
    # A 28-joint array whose joint k holds k: each of ours must hold its annot3 index.
    ours = np.arange(28)[list(MPI_INF_3DHP_TO_H36M)]
    expected = {name: idx - 1 for name, idx in zip(OURS_FOR_TEST_17, MPI_INF_3DHP_TEST_17)}
    assert {JOINT_NAMES[j]: int(i) for j, i in enumerate(ours)} == expected
    assert ours[JOINT_NAMES.index("left_wrist")] == 11
    assert ours[JOINT_NAMES.index("right_wrist")] == 16
