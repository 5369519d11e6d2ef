"""Joint angles of the procedural skeleton, their human limits, and the pose they give.

Angles are named channels, one value per frame, in degrees. Sided channels start with
'r_' or 'l_'. Meanings (body frame x forward, y left, z up):

- root_pitch: pelvis tilted forward; root_roll: tilted sideways; root_yaw: pelvis turned
  relative to the walking heading;
- hip_flex: thigh forward; hip_abd: thigh out to the side; hip_rot: knee turned inwards;
- knee: flexion, the shin swings backwards only (hinge, >= 0);
- spine_flex / spine_side / spine_twist: the lower back (turns everything above it);
  chest_flex: the upper back;
- neck_flex (chin down), neck_yaw (look left), neck_side: the neck; head_flex: the head;
- sh_fwd: arm raised forwards (negative: backwards); sh_side: arm raised out to the side;
  sh_rot: upper arm turned outwards; elbow: flexion, the forearm folds forwards only.
"""

from __future__ import annotations

import numpy as np

from pose3d.data.motion.body import BodyShape
from pose3d.data.motion.kinematics import axis_rotation, forward_kinematics
from pose3d.skeleton.h36m import JOINT_INDEX, NUM_JOINTS, PARENTS

SIDES = {"r": -1.0, "l": 1.0}  # the sign of the subject's left (+y) for each side

# Degrees. Ranges of motion of a healthy adult, a little inside the textbook extremes.
LIMITS: dict[str, tuple[float, float]] = {
    "root_pitch": (-20, 80), "root_roll": (-15, 15), "root_yaw": (-30, 30),
    "hip_flex": (-25, 125), "hip_abd": (-15, 45), "hip_rot": (-35, 40), "knee": (0, 145),
    "spine_flex": (-20, 50), "spine_side": (-25, 25), "spine_twist": (-35, 35),
    "chest_flex": (-10, 25), "neck_flex": (-40, 50), "neck_yaw": (-70, 70),
    "neck_side": (-30, 30), "head_flex": (-20, 20),
    "sh_fwd": (-50, 175), "sh_side": (-15, 170), "sh_rot": (-60, 90), "elbow": (0, 145),
}
_SIDED = ("hip_flex", "hip_abd", "hip_rot", "knee", "sh_fwd", "sh_side", "sh_rot", "elbow")
CHANNELS: tuple[str, ...] = tuple(
    [f"{s}_{n}" for s in SIDES for n in _SIDED] + [n for n in LIMITS if n not in _SIDED])


def limit_of(channel: str) -> tuple[float, float]:
    return LIMITS[channel[2:] if channel[:2] in ("r_", "l_") else channel]


def blank_channels(num_frames: int) -> dict[str, np.ndarray]:
    return {name: np.zeros(num_frames) for name in CHANNELS}


def clamp_to_limits(channels: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every channel clipped to its human range; unknown channel names are an error."""
    unknown = set(channels) - set(CHANNELS)
    if unknown:
        raise ValueError(f"unknown joint-angle channels {sorted(unknown)}")
    return {name: np.clip(value, *limit_of(name)) for name, value in channels.items()}


def _rot(axis: str, degrees: np.ndarray) -> np.ndarray:
    return axis_rotation(axis, np.radians(degrees))


def swing(forward: np.ndarray, outward: np.ndarray, side: float) -> np.ndarray:
    """Rotation [T, 3, 3] tilting a limb that hangs along -z forwards by `forward` and out
    to `side` by `outward` degrees, as one rotation about a horizontal axis (so the limb
    passes smoothly through hanging straight down)."""
    rotvec = np.radians(np.stack([side * outward, -forward, np.zeros_like(forward)], -1))
    angle = np.linalg.norm(rotvec, axis=-1, keepdims=True)
    axis = rotvec / np.maximum(angle, 1e-12)
    k = np.zeros(rotvec.shape + (3,))
    k[..., 0, 1], k[..., 0, 2], k[..., 1, 2] = -axis[..., 2], axis[..., 1], -axis[..., 0]
    k = k - np.swapaxes(k, -1, -2)
    s, c = np.sin(angle)[..., None], np.cos(angle)[..., None]
    return np.eye(3) + s * k + (1 - c) * (k @ k)


def local_rotations(ch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-joint local rotations [T, 17, 3, 3] and the neck rotation [T, 3, 3] that turns
    the thorax -> neck/nose offset (the neck has no joint of its own in the 17)."""
    num_frames = len(ch["root_pitch"])
    rot = np.broadcast_to(np.eye(3), (num_frames, NUM_JOINTS, 3, 3)).copy()
    rot[:, JOINT_INDEX["pelvis"]] = (_rot("z", ch["root_yaw"]) @ _rot("y", ch["root_pitch"])
                                     @ _rot("x", ch["root_roll"]))
    for prefix, side in SIDES.items():
        name = "right" if prefix == "r" else "left"
        hip, knee = ch[f"{prefix}_hip_flex"], ch[f"{prefix}_knee"]
        rot[:, JOINT_INDEX[f"{name}_hip"]] = (swing(hip, ch[f"{prefix}_hip_abd"], side)
                                              @ _rot("z", -side * ch[f"{prefix}_hip_rot"]))
        rot[:, JOINT_INDEX[f"{name}_knee"]] = _rot("y", knee)
        rot[:, JOINT_INDEX[f"{name}_shoulder"]] = (
            swing(ch[f"{prefix}_sh_fwd"], ch[f"{prefix}_sh_side"], side)
            @ _rot("z", side * ch[f"{prefix}_sh_rot"]))
        rot[:, JOINT_INDEX[f"{name}_elbow"]] = _rot("y", -ch[f"{prefix}_elbow"])
    rot[:, JOINT_INDEX["spine"]] = (_rot("y", ch["spine_flex"]) @ _rot("x", ch["spine_side"])
                                    @ _rot("z", ch["spine_twist"]))
    rot[:, JOINT_INDEX["thorax"]] = _rot("y", ch["chest_flex"])
    neck = _rot("z", ch["neck_yaw"]) @ _rot("y", ch["neck_flex"]) @ _rot("x", ch["neck_side"])
    rot[:, JOINT_INDEX["neck"]] = neck @ _rot("y", ch["head_flex"])
    return rot, neck


def body_frame_pose(body: BodyShape, ch: dict[str, np.ndarray]) -> np.ndarray:
    """The skeleton posed by joint angles, pelvis at the origin, body frame: [T, 17, 3] mm.
    Angles are clipped to LIMITS first."""
    ch = clamp_to_limits(ch)
    rot, neck = local_rotations(ch)
    offsets = np.broadcast_to(body.rest_offsets(), (len(rot), NUM_JOINTS, 3)).copy()
    nose = JOINT_INDEX["neck"]
    offsets[:, nose] = np.einsum("tab,b->ta", neck, offsets[0, nose])
    pos, _ = forward_kinematics(PARENTS, offsets, rot, np.zeros((len(rot), 3)))
    return pos
