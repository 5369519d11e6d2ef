"""The procedural actions: each turns time into joint angles (degrees, see rig.py) plus how
the body turns, with speed, amplitude and phase drawn per call.

Every action takes the person's MotionStyle (style.py): its posture, stance and sway come
in through the relaxed pose, its arm swing and gestures scale with the style's amplitude
(the tempo is applied by the caller, as a time scale).

An action returns a Motion: the joint-angle channels, a yaw rate (degrees per second,
turning on the spot) and a path curvature (per mm travelled, turning while walking). The
root's travel itself is not chosen here: it follows from the feet (procedural.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pose3d.data.motion.body import BodyShape
from pose3d.data.motion.rig import SIDES, blank_channels, body_frame_pose
from pose3d.data.motion.signals import episodes, periodic_bump, smooth_noise
from pose3d.data.motion.style import MotionStyle
from pose3d.skeleton.h36m import JOINT_INDEX


@dataclass
class Motion:
    channels: dict[str, np.ndarray]
    yaw_rate: np.ndarray  # [T] deg/s
    curvature: np.ndarray  # [T] 1/mm of forward travel


def _relaxed(num_frames: int, fps: float, rng: np.random.Generator,
             style: MotionStyle) -> dict[str, np.ndarray]:
    """Standing at ease in the person's posture: small slow sway everywhere (as much as the
    style's amplitude), arms hanging a little away from the hips."""
    def noise(amplitude: float) -> np.ndarray:
        return smooth_noise(num_frames, fps, rng, amplitude * style.amplitude)

    ch = blank_channels(num_frames)
    ch["root_pitch"] += 3 + noise(1.5)
    ch["root_roll"] += noise(1.5)
    ch["root_yaw"] += noise(3)
    ch["spine_flex"] += 2 + noise(2)
    ch["spine_side"] += noise(2)
    ch["spine_twist"] += noise(4)
    ch["neck_flex"] += 5 + noise(6)
    ch["neck_yaw"] += noise(15)
    ch["neck_side"] += noise(3)
    for p in SIDES:
        ch[f"{p}_hip_abd"] += 3 + noise(1.5)
        ch[f"{p}_hip_rot"] += -5 + noise(3)
        ch[f"{p}_knee"] += 4 + noise(2)
        ch[f"{p}_sh_fwd"] += noise(4)
        ch[f"{p}_sh_side"] += 9 + noise(2)
        ch[f"{p}_sh_rot"] += noise(5)
        ch[f"{p}_elbow"] += 14 + noise(5)
    ch["root_pitch"] += style.lean
    # a stoop rounds the whole back; the head is raised again to look ahead
    ch["spine_flex"] += 0.5 * style.stoop
    ch["chest_flex"] += 0.5 * style.stoop
    ch["neck_flex"] -= 0.5 * (style.stoop + style.lean)
    for p in SIDES:
        ch[f"{p}_hip_abd"] += style.stance
    return ch


def _lean(ch: dict, lean: np.ndarray, pelvis_share: float) -> None:
    """Lean the trunk forward by `lean` degrees, split between pelvis and lower back."""
    ch["root_pitch"] += pelvis_share * lean
    ch["spine_flex"] += (1 - pelvis_share) * lean


def _trunk_lean(ch: dict) -> np.ndarray:
    return ch["root_pitch"] + ch["spine_flex"] + ch["chest_flex"]


def _legs(ch: dict, thigh: np.ndarray, shin: np.ndarray, sides=("r", "l")) -> None:
    """Set hips and knees from where the segments point in the world: the thigh `thigh`
    degrees forward of hanging down, the shin `shin` degrees tilted with the knee ahead of
    the ankle (so the pelvis tilt is undone at the hip)."""
    for p in sides:
        ch[f"{p}_hip_flex"] = thigh + ch["root_pitch"]
        ch[f"{p}_knee"] = ch[f"{p}_knee"] + thigh + shin


def _hang_arms(ch: dict, sides=("r", "l")) -> None:
    """Relaxed arms keep hanging down whatever the trunk's lean."""
    lean = _trunk_lean(ch)
    for p in sides:
        ch[f"{p}_sh_fwd"] += lean


def _still(num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(num_frames), np.zeros(num_frames)


def walking(num_frames: int, fps: float, rng: np.random.Generator, body: BodyShape,
            style: MotionStyle) -> Motion:
    """Walking round a circle (radius 0.7-1.0 m) so the path stays near the origin."""
    ch = _relaxed(num_frames, fps, rng, style)
    t = np.arange(num_frames) / fps
    stride_hz, hip_amp, arm_amp = rng.uniform(0.85, 1.05), rng.uniform(17, 24), rng.uniform(10, 25)
    hip_amp *= np.sqrt(style.amplitude)  # long or short strides, arms swinging with them
    arm_amp *= style.amplitude
    phase0 = rng.uniform()
    knee_stance, knee_swing = rng.uniform(8, 16), rng.uniform(45, 58)
    right = 2 * np.pi * (stride_hz * t + phase0)
    ch["root_pitch"] += rng.uniform(2, 5)
    ch["root_yaw"] += 5 * np.cos(right)
    ch["spine_twist"] -= 4 * np.cos(right)
    ch["root_roll"] += 2 * np.sin(right)
    for p, offset in (("r", 0.0), ("l", 0.5)):
        phase = stride_hz * t + phase0 + offset
        swing_wave = np.cos(2 * np.pi * (phase + 0.1))  # 1: leg forward (heel strike)
        ch[f"{p}_hip_flex"] = 0.3 * hip_amp + hip_amp * swing_wave + ch["root_pitch"]
        ch[f"{p}_knee"] += (knee_stance * periodic_bump(phase, 0.12, 0.07)
                            + knee_swing * periodic_bump(phase, 0.7, 0.1))
        ch[f"{p}_sh_fwd"] += rng.uniform(0, 6) - arm_amp * swing_wave
        ch[f"{p}_elbow"] += 8 * (1 - swing_wave)
    curvature = rng.choice([-1.0, 1.0]) / rng.uniform(700, 1000)
    return Motion(ch, np.zeros(num_frames), np.full(num_frames, curvature))


def sitting_down(num_frames: int, fps: float, rng: np.random.Generator,
                 body: BodyShape, style: MotionStyle) -> Motion:
    """Sitting down on a seat at knee height, staying a while, standing up again."""
    ch = _relaxed(num_frames, fps, rng, style)
    ep = episodes(num_frames, fps, rng, rest=(0.5, 2.0), rise=(1.2, 2.2), hold=(1.0, 3.0),
                  fall=(1.2, 2.2))
    s = ep.level
    mid = 4 * s * (1 - s)  # peaks halfway: lean forward to get the weight over the feet
    per = rng.uniform(size=(ep.num_cycles, 6))[ep.cycle]
    _lean(ch, s * (2 + 10 * per[:, 0]) + mid * (25 + 15 * per[:, 1]), pelvis_share=0.6)
    _legs(ch, thigh=s * (80 + 12 * per[:, 2]), shin=s * (-5 + 15 * per[:, 3]) + 15 * mid)
    for p in SIDES:
        ch[f"{p}_hip_abd"] += s * (4 + 10 * per[:, 4])
        ch[f"{p}_elbow"] += s * (45 + 25 * per[:, 5])
        ch[f"{p}_sh_fwd"] += s * 15
    _hang_arms(ch)
    return Motion(ch, *_still(num_frames))


def squatting(num_frames: int, fps: float, rng: np.random.Generator,
              body: BodyShape, style: MotionStyle) -> Motion:
    """Deep squats, heels down, knees out, arms forward for balance."""
    ch = _relaxed(num_frames, fps, rng, style)
    ep = episodes(num_frames, fps, rng, rest=(0.3, 1.5), rise=(0.8, 1.6), hold=(0.2, 1.5),
                  fall=(0.8, 1.6))
    s = ep.level
    per = rng.uniform(size=(ep.num_cycles, 6))[ep.cycle]
    _lean(ch, s * (25 + 20 * per[:, 0]), pelvis_share=0.5)
    _legs(ch, thigh=s * (80 + 20 * per[:, 1]), shin=s * (25 + 12 * per[:, 2]))
    arms_forward = per[:, 3] > 0.4
    for p in SIDES:
        ch[f"{p}_hip_abd"] += s * (10 + 12 * per[:, 4])
        ch[f"{p}_hip_rot"] -= s * 10
        ch[f"{p}_sh_fwd"] += s * np.where(arms_forward, 55 + 35 * per[:, 5], 10)
    _hang_arms(ch)
    return Motion(ch, *_still(num_frames))


def bending(num_frames: int, fps: float, rng: np.random.Generator,
            body: BodyShape, style: MotionStyle) -> Motion:
    """Bending forward from the hips, knees soft, arms hanging."""
    ch = _relaxed(num_frames, fps, rng, style)
    ep = episodes(num_frames, fps, rng, rest=(0.5, 2.0), rise=(1.0, 2.0), hold=(0.3, 2.0),
                  fall=(1.0, 2.0))
    s = ep.level
    per = rng.uniform(size=(ep.num_cycles, 3))[ep.cycle]
    _lean(ch, s * (50 + 35 * per[:, 0]), pelvis_share=0.6)
    _legs(ch, thigh=s * (10 + 10 * per[:, 1]), shin=s * 8 * per[:, 2])  # hips go back
    _hang_arms(ch)
    ch["neck_flex"] -= s * 20  # keep looking ahead-down rather than at the knees
    return Motion(ch, *_still(num_frames))


def _wrist_clearance(body: BodyShape, ch: dict, wrists: list[int]) -> float:
    """Height of the lowest of `wrists` above the floor in a one-frame pose, mm."""
    pose = body_frame_pose(body, ch)[0]
    feet = pose[[JOINT_INDEX["right_ankle"], JOINT_INDEX["left_ankle"]], 2].min()
    return float(pose[wrists, 2].min() - feet + body.ankle_height)


def _pick_pose(ch: dict, s: np.ndarray, per: np.ndarray, depth: np.ndarray) -> None:
    """Reach down to the floor; per[:, 0]: 0 half stoop (hips) .. 1 crouch (knees); per[:, 1]:
    which hand (< 0.35 right, > 0.65 left, else both); depth scales the whole movement."""
    d, style = s * depth, 0.4 + 0.6 * per[:, 0]
    ch["root_pitch"] += d * (42 - 22 * style)
    ch["spine_flex"] += d * (35 + 5 * style)
    ch["chest_flex"] += d * 15
    _legs(ch, thigh=d * (50 + 46 * style), shin=d * (20 + 20 * style))
    for p in SIDES:
        ch[f"{p}_hip_abd"] += d * 12 * style
    _hang_arms(ch)
    for p, reaching in (("r", per[:, 1] <= 0.65), ("l", per[:, 1] >= 0.35)):
        ch[f"{p}_sh_fwd"] += d * np.where(reaching, 10 * per[:, 2], 0)
        ch[f"{p}_elbow"] += d * np.where(reaching, -0.7 * ch[f"{p}_elbow"], 35)
    ch["neck_flex"] += d * 10


def picking_up(num_frames: int, fps: float, rng: np.random.Generator,
               body: BodyShape, style: MotionStyle) -> Motion:
    """Stooping or crouching until a hand is just above the floor (or as low as the hips
    and knees allow), then straightening."""
    ch = _relaxed(num_frames, fps, rng, style)
    ep = episodes(num_frames, fps, rng, rest=(0.5, 2.0), rise=(0.9, 1.8), hold=(0.3, 1.2),
                  fall=(0.9, 1.8))
    per_cycle = rng.uniform(size=(ep.num_cycles, 3))
    target = rng.uniform(50, 150, ep.num_cycles)  # wrist above the floor, mm
    depth = np.ones(ep.num_cycles)
    for c in range(ep.num_cycles):
        frames = np.flatnonzero(ep.cycle == c)
        if ep.level[frames].max() < 0.5:
            continue
        f = frames[np.argmax(ep.level[frames])]
        hands = [JOINT_INDEX[f"{n}_wrist"] for n, on in
                 (("right", per_cycle[c, 1] <= 0.65), ("left", per_cycle[c, 1] >= 0.35)) if on]

        def clearance(d: float, f=f, c=c, hands=hands) -> float:
            one = {k: v[f:f + 1].copy() for k, v in ch.items()}
            _pick_pose(one, np.ones(1), per_cycle[c:c + 1], np.array([d]))
            return _wrist_clearance(body, one, hands)

        lo, hi = 0.2, 1.0  # at 1 the hips and knees reach their limits
        for _ in range(10):  # clearance falls as the depth grows
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if clearance(mid) > target[c] else (lo, mid)
        depth[c] = (lo + hi) / 2
    _pick_pose(ch, ep.level, per_cycle[ep.cycle], depth[ep.cycle])
    return Motion(ch, *_still(num_frames))


def _arm_to(ch: dict, p: str, s: np.ndarray, fwd, side, rot, elbow) -> None:
    """Move arm `p` from its relaxed pose to a target as s goes 0 -> 1; the elbow bends on
    the way (the hand is brought in, then out)."""
    ch[f"{p}_sh_fwd"] += s * (fwd - ch[f"{p}_sh_fwd"])
    ch[f"{p}_sh_side"] += s * (side - ch[f"{p}_sh_side"])
    ch[f"{p}_sh_rot"] += s * (rot - ch[f"{p}_sh_rot"])
    ch[f"{p}_elbow"] += s * (elbow - ch[f"{p}_elbow"]) + 40 * 4 * s * (1 - s)


def _hands(choice: np.ndarray, both: float) -> dict[str, np.ndarray]:
    """Which arms act, from a uniform draw: both below `both`, else right or left."""
    return {"r": (choice < both) | (choice > (1 + both) / 2),
            "l": (choice < both) | ((choice >= both) & (choice <= (1 + both) / 2))}


def reaching(num_frames: int, fps: float, rng: np.random.Generator,
             body: BodyShape, style: MotionStyle) -> Motion:
    """Reaching out to points in front, above or to the side, leaning and turning to them."""
    ch = _relaxed(num_frames, fps, rng, style)
    ep = episodes(num_frames, fps, rng, rest=(0.4, 1.5), rise=(0.7, 1.4), hold=(0.3, 1.5),
                  fall=(0.7, 1.4))
    s, per = ep.level, rng.uniform(size=(ep.num_cycles, 7))[ep.cycle]
    fwd, side = 50 + 100 * per[:, 1], -10 + 70 * per[:, 2]
    acting = _hands(per[:, 0], both=0.25)
    for p in SIDES:
        on = s * acting[p]
        _arm_to(ch, p, on, fwd, side, -20 + 50 * per[:, 3], 25 * per[:, 4])
    toward = np.where(acting["l"] & ~acting["r"], 1.0, np.where(acting["r"] & ~acting["l"],
                                                                 -1.0, 0.0))
    _lean(ch, s * 20 * per[:, 5] * (fwd < 110), pelvis_share=0.5)
    ch["spine_twist"] += s * toward * (5 + 15 * per[:, 6])
    ch["neck_yaw"] += s * toward * 0.4 * side
    ch["neck_flex"] -= s * 0.3 * (fwd - 70)
    return Motion(ch, *_still(num_frames))


def waving(num_frames: int, fps: float, rng: np.random.Generator, body: BodyShape,
            style: MotionStyle) -> Motion:
    """One hand (sometimes both) raised and waved side to side from the elbow."""
    ch = _relaxed(num_frames, fps, rng, style)
    ep = episodes(num_frames, fps, rng, rest=(0.3, 1.5), rise=(0.5, 1.0), hold=(1.0, 4.0),
                  fall=(0.5, 1.0))
    s, per = ep.level, rng.uniform(size=(ep.num_cycles, 8))[ep.cycle]
    t = np.arange(num_frames) / fps
    wave = np.sin(2 * np.pi * (1.5 + 1.5 * per[:, 1]) * t + 2 * np.pi * per[:, 2])
    acting = _hands(per[:, 0], both=0.1)
    for p in SIDES:
        on = s * acting[p]
        _arm_to(ch, p, on, 35 * per[:, 3], 70 + 60 * per[:, 4], 55 + 30 * per[:, 5],
                65 + 35 * per[:, 6])
        ch[f"{p}_elbow"] += on ** 3 * (15 + 15 * per[:, 7]) * style.amplitude * wave
    ch["root_roll"] += s * 3 * (2 * per[:, 4] - 1)
    return Motion(ch, *_still(num_frames))


def turning(num_frames: int, fps: float, rng: np.random.Generator, body: BodyShape,
            style: MotionStyle) -> Motion:
    """Turning on the spot by small steps, the head and shoulders leading the turn."""
    ch = _relaxed(num_frames, fps, rng, style)
    ep = episodes(num_frames, fps, rng, rest=(0.3, 1.5), rise=(0.3, 0.6), hold=(1.0, 3.0),
                  fall=(0.3, 0.6))
    s, per = ep.level, rng.uniform(size=(ep.num_cycles, 4))[ep.cycle]
    direction = np.where(per[:, 0] < 0.5, -1.0, 1.0)
    phase = 2 * np.pi * rng.uniform(0.9, 1.3) * np.arange(num_frames) / fps + rng.uniform(0, 7)
    for p, lift in (("r", np.maximum(np.sin(phase), 0) ** 2),
                    ("l", np.maximum(-np.sin(phase), 0) ** 2)):
        ch[f"{p}_hip_flex"] += s * (15 + 15 * per[:, 1]) * lift
        ch[f"{p}_knee"] += s * (30 + 25 * per[:, 2]) * lift
    ch["spine_twist"] += s * direction * 8
    ch["neck_yaw"] += s * direction * 20
    # the body turns while one foot is off the ground (sin^2 averages 1/2)
    yaw_rate = s * direction * (60 + 60 * per[:, 3]) * 2 * np.sin(phase) ** 2
    return Motion(ch, yaw_rate, np.zeros(num_frames))


def directions(num_frames: int, fps: float, rng: np.random.Generator,
               body: BodyShape, style: MotionStyle) -> Motion:
    """Giving directions: pointing one way or another, looking where the arm points."""
    ch = _relaxed(num_frames, fps, rng, style)
    ep = episodes(num_frames, fps, rng, rest=(0.5, 2.0), rise=(0.5, 1.0), hold=(0.8, 2.5),
                  fall=(0.5, 1.0))
    s, per = ep.level, rng.uniform(size=(ep.num_cycles, 5))[ep.cycle]
    side = -10 + 80 * per[:, 2]
    acting = {"r": per[:, 0] < 0.4, "l": (per[:, 0] >= 0.4) & (per[:, 0] < 0.8)}
    for p, sign in SIDES.items():
        _arm_to(ch, p, s * acting[p], 60 + 50 * per[:, 1], side, 10 * per[:, 3], 12 * per[:, 3])
        ch["neck_yaw"] += s * acting[p] * sign * (0.3 * side + 15)
        ch["spine_twist"] += s * acting[p] * sign * 10 * per[:, 4]
    looking = ~(acting["r"] | acting["l"])  # no pointing: just look around
    ch["neck_yaw"] += s * looking * (120 * per[:, 4] - 60)
    return Motion(ch, *_still(num_frames))
