"""Procedural human motion: the built-in source of 3D poses, no files needed.

A clip is made in three steps: an action (actions.py) gives joint angles over time; the
rig (rig.py) poses the subject's skeleton with them, pelvis at the origin; the feet then
place it in the world: the lower foot stays where it is on the floor (so the body walks
and turns by its steps, without sliding), the lowest ankle rests at ankle height, and the
whole path is shifted to lie near the origin.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from pose3d.data.motion import actions
from pose3d.data.motion.body import BodyShape
from pose3d.data.motion.rig import body_frame_pose
from pose3d.data.motion.style import MotionStyle
from pose3d.skeleton.h36m import JOINT_INDEX, ROOT

_ACTIONS = {
    "walking": actions.walking,
    "sitting_down": actions.sitting_down,
    "bending": actions.bending,
    "picking_up": actions.picking_up,
    "reaching": actions.reaching,
    "waving": actions.waving,
    "squatting": actions.squatting,
    "turning": actions.turning,
    "directions": actions.directions,
}
ACTIONS: tuple[str, ...] = tuple(_ACTIONS)
WANDER_MM = 1200.0  # the root stays within about this of the origin, along x and y
CONTACT_SOFTNESS_MM = 5.0  # how much lower one foot must be to carry the weight alone
WEIGHT_SHIFT_S = 0.1  # how long passing the weight from one foot to the other takes
SETTLE_MM = 10.0  # the lowest ankle is at most log(2) of this above ankle height
_ANKLES = [JOINT_INDEX["right_ankle"], JOINT_INDEX["left_ankle"]]


def _planar_rotation(angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # [T, 2, 2]


def _walk_on_feet(local: np.ndarray, motion: actions.Motion, fps: float,
                  heading0: float) -> tuple[np.ndarray, np.ndarray]:
    """Heading [T] (radians) and root path [T, 2] (mm) that keep the weight-bearing foot
    still on the floor. local: [T, 17, 3] body-frame poses."""
    feet = local[:, _ANKLES]  # [T, 2, 3]
    weight = np.exp(-(feet[..., 2] - feet[..., 2].min(axis=1, keepdims=True))
                    / CONTACT_SOFTNESS_MM)
    weight /= weight.sum(axis=1, keepdims=True)  # [T, 2]
    # hand the weight over in about 0.1 s, not in the frame the other foot becomes lower
    weight = gaussian_filter1d(weight, WEIGHT_SHIFT_S / 3 * fps, axis=0, mode="nearest")
    slide = np.zeros((len(local), 2))
    slide[1:] = np.einsum("tf,tfa->ta", weight[1:], np.diff(feet[..., :2], axis=0))
    forward = -slide[:, 0]  # how far the body moved ahead of its planted foot
    turn = np.radians(motion.yaw_rate) / fps + motion.curvature * forward
    turn[0] = 0.0
    heading = heading0 + np.cumsum(turn)
    world_feet = np.einsum("tab,tfb->tfa", _planar_rotation(heading), feet[..., :2])
    step = np.zeros((len(local), 2))
    step[1:] = -np.einsum("tf,tfa->ta", weight[1:], np.diff(world_feet, axis=0))
    return heading, np.cumsum(step, axis=0)


def _soft_min(z: np.ndarray) -> np.ndarray:
    """A smooth lower bound of z [T, F] over its last axis (the body settles smoothly from
    one foot onto the other instead of dropping onto the lower one): [T]."""
    low = z.min(axis=-1)
    return low - SETTLE_MM * np.log(np.exp(-(z - low[:, None]) / SETTLE_MM).sum(axis=-1))


def _place_near_origin(poses: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Centre the root's path on the origin, then shift it at random as far as it stays
    within WANDER_MM."""
    root = poses[:, ROOT, :2]
    low, high = root.min(axis=0), root.max(axis=0)
    margin = np.maximum(WANDER_MM - (high - low) / 2, 0.0)
    shift = rng.uniform(-margin, margin) - (low + high) / 2
    poses[..., :2] += shift
    return poses


def _check_args(action: str, body: BodyShape, num_frames: int, fps: float) -> None:
    if action not in _ACTIONS:
        raise ValueError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
    if not isinstance(body, BodyShape):
        raise TypeError(f"body must be a BodyShape (see sample_subject), got {type(body)}")
    if isinstance(num_frames, bool) or not isinstance(num_frames, int | np.integer) \
            or num_frames < 1:
        raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps!r}")


def generate_clip(action: str, body: BodyShape, num_frames: int, fps: float = 25.0,
                  rng: np.random.Generator | None = None,
                  style: MotionStyle | None = None) -> np.ndarray:
    """A clip of `action` performed by `body` in the person's `style` (neutral when None):
    [T, 17, 3] float32, world mm, z up, floor at z = 0, facing a random direction, root
    within about WANDER_MM of the origin. Speed, amplitude and phase are drawn from `rng`
    (a fresh generator when None)."""
    _check_args(action, body, num_frames, fps)
    rng = np.random.default_rng() if rng is None else rng
    style = MotionStyle() if style is None else style
    # A brisk person does the same movements in less time: the action's clock runs faster
    # than the frames' by the tempo, for the joint angles and the turning alike.
    pace = float(fps) / style.tempo
    motion = _ACTIONS[action](int(num_frames), pace, rng, body, style)
    local = body_frame_pose(body, motion.channels)
    heading, path = _walk_on_feet(local, motion, pace, rng.uniform(0, 2 * np.pi))
    poses = np.einsum("tab,tjb->tja", _planar_rotation(heading), local[..., :2])
    height = body.ankle_height - _soft_min(local[:, _ANKLES, 2])
    poses = np.concatenate([poses + path[:, None], (local[..., 2] + height[:, None])[..., None]],
                           axis=-1)
    return _place_near_origin(poses, rng).astype(np.float32)
