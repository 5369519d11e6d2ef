"""From BVH skeletons (CMU and similar) to the 17-joint Human3.6M order.

Three naming conventions are recognised (names match case-insensitively, and a namespace
prefix such as 'mixamorig:' is ignored):

- 'motionbuilder': Hips, LeftUpLeg, LeftLeg, LeftFoot, Spine, Spine1, Neck, Neck1, Head,
  LeftShoulder (the clavicle), LeftArm, LeftForeArm, LeftHand (CMU 02_01, Mixamo-like);
- '3dsmax': Hips, LeftHip, LeftKnee, LeftAnkle, Chest, Chest2, lowerneck, Neck, Head,
  LeftCollar, LeftShoulder (the upper arm), LeftElbow, LeftWrist (CMU 131_xx);
- 'asf': the CMU ASF bone names, lhipjoint, lfemur, ltibia, lfoot, upperback, thorax,
  lowerneck, upperneck, head, lclavicle, lhumerus, lradius, lwrist.

A BVH joint sits at the start of its bone, so hips, knees, ankles, shoulders, elbows and
wrists are BVH joints taken as they are. The rest are built:

- pelvis: the midpoint of the two hip joints (the BVH root sits about 10 cm higher);
- thorax: the start of the upper neck (Neck1 / Neck / upperneck), on the midline at
  shoulder height; its fallback is the first neck joint;
- spine: the point halfway, by arc length, along the spine chain from the pelvis through
  the BVH root and back joints to the thorax (so it follows the back's bend);
- neck (H36M's neck/nose): in front of the head joint (the skull base) by 0.6 head
  lengths along the head's forward direction, so the face side can be told from the back;
- head: the head's end site (top of the head); where the file leaves that end site at
  zero length, the head joint's own offset (the upper neck) stands in for it.

Only the limb bones and pelvis-hip bones are rigid in the result: the built spine, thorax,
neck and head points move with the back and neck, so those bone lengths vary a little.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pose3d.skeleton.h36m import JOINT_INDEX, NUM_JOINTS

_LIMBS = ("hip", "knee", "ankle", "shoulder", "elbow", "wrist")


def _sided(template: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """Expand '{S}' / '{s}' in names into Left/Right and l/r for both sides."""
    out = {}
    for role, names in template.items():
        for side, big, small in (("left", "Left", "l"), ("right", "Right", "r")):
            key = f"{side}_{role}" if role in _LIMBS else role
            out[key] = tuple(n.format(S=big, s=small) for n in names)
    return out


# role -> candidate BVH names, first present wins.
CONVENTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "motionbuilder": _sided({
        "hip": ("{S}UpLeg",), "knee": ("{S}Leg",), "ankle": ("{S}Foot",),
        "shoulder": ("{S}Arm",), "elbow": ("{S}ForeArm",), "wrist": ("{S}Hand",),
        "thorax": ("Neck1", "Neck"), "head_base": ("Head",),
    }),
    "3dsmax": _sided({
        "hip": ("{S}Hip",), "knee": ("{S}Knee",), "ankle": ("{S}Ankle",),
        "shoulder": ("{S}Shoulder",), "elbow": ("{S}Elbow",), "wrist": ("{S}Wrist",),
        "thorax": ("Neck", "lowerneck"), "head_base": ("Head",),
    }),
    "asf": _sided({
        "hip": ("{s}femur",), "knee": ("{s}tibia",), "ankle": ("{s}foot",),
        "shoulder": ("{s}humerus",), "elbow": ("{s}radius",), "wrist": ("{s}wrist",),
        "thorax": ("upperneck", "lowerneck"), "head_base": ("head",),
    }),
}
DIRECT_JOINTS = tuple(f"{side}_{limb}" for side in ("right", "left") for limb in _LIMBS) \
    + ("thorax",)
NOSE_FORWARD = 0.6  # head lengths in front of the skull base


def _plain(name: str) -> str:
    return name.rsplit(":", 1)[-1].lower()


def _resolve(names: tuple[str, ...], table: dict[str, tuple[str, ...]]) -> dict[str, int]:
    index = {_plain(n): i for i, n in enumerate(names)}
    found = {}
    for role, candidates in table.items():
        hit = next((index[c.lower()] for c in candidates if c.lower() in index), None)
        if hit is not None:
            found[role] = hit
    return found


def detect_convention(names: tuple[str, ...]) -> str:
    """The naming convention whose every role is present; ValueError naming what is missing
    from the closest one otherwise."""
    resolved = {conv: _resolve(tuple(names), table) for conv, table in CONVENTIONS.items()}
    complete = [conv for conv, found in resolved.items() if len(found) == len(CONVENTIONS[conv])]
    if complete:
        return complete[0]
    best = max(resolved, key=lambda conv: len(resolved[conv]))
    missing = {role: CONVENTIONS[best][role] for role in CONVENTIONS[best]
               if role not in resolved[best]}
    raise ValueError(f"BVH skeleton matches no known naming convention "
                     f"({', '.join(CONVENTIONS)}); closest is {best!r}, which lacks {missing}")


@dataclass(frozen=True)
class BvhJointMap:
    """How one BVH skeleton gives the 17 joints (indices are BVH joint indices).

    direct: H36M joint -> BVH joint; spine_chain: BVH joints from the root to the thorax
    joint; head_base: the skull-base joint; head_vector, nose_vector: [3] in the head
    joint's rest frame (file units), the head top and the nose relative to head_base.
    """

    convention: str
    direct: dict[int, int]
    spine_chain: tuple[int, ...]
    head_base: int
    head_vector: np.ndarray
    nose_vector: np.ndarray


def rest_pose(parents: tuple[int, ...], offsets: np.ndarray) -> np.ndarray:
    """Joint positions [J, 3] with every rotation at zero (the OFFSETs chained)."""
    pos = np.zeros((len(parents), 3))
    for j, p in enumerate(parents):
        pos[j] = offsets[j] + (pos[p] if p >= 0 else 0.0)
    return pos


def _chain_to_root(parents: tuple[int, ...], joint: int) -> tuple[int, ...]:
    chain = [joint]
    while parents[chain[-1]] >= 0:
        chain.append(parents[chain[-1]])
    return tuple(reversed(chain))


def _head_vector(names, parents, offsets, head_base: int) -> np.ndarray:
    """Head top relative to the skull base, rest frame; a zero-length end site (as in CMU
    MotionBuilder exports) is replaced by the upper neck's own offset."""
    children = [j for j, p in enumerate(parents) if p == head_base]
    scale = np.abs(offsets).max()
    for j in children:
        if np.linalg.norm(offsets[j]) > 1e-4 * scale:
            return offsets[j].copy()
    return offsets[head_base].copy()


def rest_forward(rest: np.ndarray, direct: dict[int, int], head: np.ndarray) -> np.ndarray:
    """Unit vector the rest skeleton faces: (right hip -> left hip) x (ankles -> head top)."""
    left = rest[direct[JOINT_INDEX["left_hip"]]] - rest[direct[JOINT_INDEX["right_hip"]]]
    ankles = (rest[direct[JOINT_INDEX["left_ankle"]]] + rest[direct[JOINT_INDEX["right_ankle"]]])
    forward = np.cross(left, head - ankles / 2)
    return forward / np.linalg.norm(forward)


def bvh_joint_map(names: tuple[str, ...], parents: tuple[int, ...],
                  offsets: np.ndarray) -> BvhJointMap:
    """Find the 17 joints in a BVH skeleton (names [J], parents [J], offsets [J, 3])."""
    convention = detect_convention(names)
    roles = _resolve(tuple(names), CONVENTIONS[convention])
    direct = {JOINT_INDEX[r]: roles[r] for r in DIRECT_JOINTS}
    head_base = roles["head_base"]
    head_vector = _head_vector(names, parents, offsets, head_base)
    rest = rest_pose(parents, offsets)
    forward = rest_forward(rest, direct, rest[head_base] + head_vector)
    nose_vector = NOSE_FORWARD * np.linalg.norm(head_vector) * forward
    return BvhJointMap(convention, direct, _chain_to_root(parents, roles["thorax"]), head_base,
                       head_vector, nose_vector)


def _halfway_along(points: np.ndarray) -> np.ndarray:
    """The point at half the arc length of polylines [T, N, 3] -> [T, 3]."""
    seg = np.linalg.norm(np.diff(points, axis=1), axis=-1)  # [T, N-1]
    cum = np.concatenate([np.zeros_like(seg[:, :1]), np.cumsum(seg, axis=1)], axis=1)
    half = cum[:, -1:] / 2
    k = np.clip((cum <= half).sum(axis=1) - 1, 0, points.shape[1] - 2)  # segment holding it
    t = np.arange(points.shape[0])
    frac = (half[:, 0] - cum[t, k]) / np.maximum(seg[t, k], 1e-12)
    return points[t, k] + frac[:, None] * (points[t, k + 1] - points[t, k])


def h36m17_from_bvh(positions: np.ndarray, head_rotation: np.ndarray,
                    jmap: BvhJointMap) -> np.ndarray:
    """The 17 joints from BVH joint positions [T, J, 3] and the head joint's global
    rotation [T, 3, 3] (same units and axes as the input) -> [T, 17, 3]."""
    out = np.zeros((positions.shape[0], NUM_JOINTS, 3))
    for ours, theirs in jmap.direct.items():
        out[:, ours] = positions[:, theirs]
    pelvis = (out[:, JOINT_INDEX["left_hip"]] + out[:, JOINT_INDEX["right_hip"]]) / 2
    out[:, JOINT_INDEX["pelvis"]] = pelvis
    chain = np.concatenate([pelvis[:, None], positions[:, list(jmap.spine_chain)]], axis=1)
    out[:, JOINT_INDEX["spine"]] = _halfway_along(chain)
    base = positions[:, jmap.head_base]
    out[:, JOINT_INDEX["neck"]] = base + head_rotation @ jmap.nose_vector
    out[:, JOINT_INDEX["head"]] = base + head_rotation @ jmap.head_vector
    return out
